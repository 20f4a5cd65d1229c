"""Create or upgrade the database schema (safe to run any number of times)."""

import sys

from sqlalchemy.exc import SQLAlchemyError

from app.core.database_manager import DatabaseManager
from app.models.migrate import prepare_database
from config import ConfigError, load_config


def main() -> int:
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    db = DatabaseManager(config["DATABASE_URL"])
    where = db.engine.url.render_as_string(hide_password=True)
    try:
        if prepare_database(db.engine):
            print(f"created database {db.engine.url.database}")
    except SQLAlchemyError as exc:
        print(f"cannot prepare the database at {where}: {exc.orig or exc}".strip(), file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"database schema is up to date ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
