"""Alembic environment: the URL comes from the app config (see init_db.py)."""

from __future__ import annotations

from alembic import context

from app.models.task import metadata


def run_migrations() -> None:
    connectable = context.config.attributes["connection"]
    context.configure(
        connection=connectable,
        target_metadata=metadata,
        render_as_batch=connectable.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
