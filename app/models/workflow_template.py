"""The workflow_templates table: stored workflow definitions, started by name with an input."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import metadata, utcnow
from app.models.types import JSONValue, UTCDateTime

templates = sa.Table(
    "workflow_templates",
    metadata,
    sa.Column("owner", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("input_schema", JSONValue),  # a JSON Schema the input must fit (null: any object)
    sa.Column("steps", JSONValue, nullable=False),  # as a workflow's submit gives them
    sa.Column("on_failure", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
)


def put(conn: Connection, owner: str, name: str, values: dict[str, Any]) -> bool:
    """The template written (replaced if it exists): True if it is new."""
    query = templates.update().where(templates.c.owner == owner, templates.c.name == name)
    if conn.execute(query.values(**values, updated_at=utcnow())).rowcount == 1:
        return False
    conn.execute(
        templates.insert().values(owner=owner, name=name, **values, created_at=utcnow(), updated_at=utcnow())
    )
    return True


def get(conn: Connection, owner: str, name: str) -> Row | None:
    query = sa.select(templates).where(templates.c.owner == owner, templates.c.name == name)
    return conn.execute(query).first()


def delete(conn: Connection, owner: str, name: str) -> bool:
    query = templates.delete().where(templates.c.owner == owner, templates.c.name == name)
    return conn.execute(query).rowcount == 1


def list_page(conn: Connection, owner: str, limit: int, after: str | None = None) -> list[Row]:
    """Up to `limit` of the owner's templates by name; `after`: the last name seen."""
    query = sa.select(templates).where(templates.c.owner == owner)
    if after is not None:
        query = query.where(templates.c.name > after)
    return list(conn.execute(query.order_by(templates.c.name).limit(limit)))


def count(conn: Connection, owner: str) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(templates).where(templates.c.owner == owner))
