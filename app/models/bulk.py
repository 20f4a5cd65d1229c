"""Bulk actions under an Idempotency-Key: one row an (owner, key), claimed before the action runs
and holding its answer after, so a repeat (or a concurrent twin) acts on nothing more."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import metadata, utcnow
from app.models.types import JSONValue, UTCDateTime

bulk_actions = sa.Table(
    "bulk_actions",
    metadata,
    sa.Column("owner", sa.String(100), primary_key=True),
    sa.Column("idempotency_key", sa.String(200), primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),  # "retry" or "cancel"
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("answer", JSONValue),  # null while the action runs
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
)


def claim(conn: Connection, owner: str, key: str, action: str, request_hash: str, expired: datetime) -> None:
    """The key taken for this action (an expired use of it released first); IntegrityError if
    another request holds it."""
    conn.execute(
        bulk_actions.delete().where(
            bulk_actions.c.owner == owner,
            bulk_actions.c.idempotency_key == key,
            bulk_actions.c.created_at < expired,
        )
    )
    conn.execute(
        bulk_actions.insert().values(
            owner=owner, idempotency_key=key, action=action, request_hash=request_hash, created_at=utcnow()
        )
    )


def get(conn: Connection, owner: str, key: str) -> Row | None:
    query = sa.select(bulk_actions).where(
        bulk_actions.c.owner == owner, bulk_actions.c.idempotency_key == key
    )
    return conn.execute(query).first()


def answer(conn: Connection, owner: str, key: str, value: dict[str, Any]) -> None:
    query = bulk_actions.update().where(bulk_actions.c.owner == owner, bulk_actions.c.idempotency_key == key)
    conn.execute(query.values(answer=value))


def release(conn: Connection, owner: str, key: str) -> None:
    """The key given back: the action failed before it could answer."""
    query = bulk_actions.delete().where(bulk_actions.c.owner == owner, bulk_actions.c.idempotency_key == key)
    conn.execute(query)
