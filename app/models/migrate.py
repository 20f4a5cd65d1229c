"""Apply the Alembic migrations in app/migrations to a database."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision`; a no-op when it is there already."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def create_database_if_missing(engine: Engine) -> bool:
    """Create the PostgreSQL database the engine points at, if it does not exist yet."""
    url = engine.url
    if url.get_backend_name() != "postgresql" or not url.database:
        return False
    admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                {"n": url.database},
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{url.database}"'))
            return not exists
    finally:
        admin.dispose()


def prepare_database(engine: Engine) -> bool:
    """Create the database if needed and apply every migration; True if it was created."""
    created = create_database_if_missing(engine)
    upgrade(engine)
    return created
