"""The schedules table (recurring tasks) and every query on it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import DEFAULT_OWNER, metadata, utcnow
from app.models.types import JSONValue, UTCDateTime

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("task", sa.String(100), nullable=False),
    sa.Column("parameters", JSONValue, nullable=False),
    sa.Column("cron", sa.String(100), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("next_run_at", UTCDateTime()),
    sa.Column("last_run_at", UTCDateTime()),
    sa.Column("last_task_id", sa.Uuid),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("owner", sa.String(100), nullable=False, server_default=DEFAULT_OWNER),
    sa.Column("webhook", JSONValue),  # given to every task the schedule makes
    sa.Column("tags", JSONValue),  # given to every task the schedule makes (null: none)
    sa.Column("sealed", sa.Text),  # its parameters' secrets, sealed (app/core/sealing.py); null: none
    sa.Index("ux_schedules_owner_name", "owner", "name", unique=True),
    sa.Index("ix_schedules_enabled_next_run_at", "enabled", "next_run_at"),
)


def insert(conn: Connection, schedule_id: uuid.UUID, **values: Any) -> None:
    conn.execute(
        schedules.insert().values(id=schedule_id, created_at=utcnow(), updated_at=utcnow(), **values)
    )


def _owned(query: Any, schedule_id: uuid.UUID, owner: str | None) -> Any:
    """`query` narrowed to one schedule, and to `owner`'s unless `owner` is None (an admin)."""
    query = query.where(schedules.c.id == schedule_id)
    return query if owner is None else query.where(schedules.c.owner == owner)


def get(conn: Connection, schedule_id: uuid.UUID, owner: str | None = None) -> Row | None:
    return conn.execute(_owned(sa.select(schedules), schedule_id, owner)).first()


def list_page(
    conn: Connection,
    limit: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    owner: str | None = None,
) -> list[Row]:
    """Up to `limit` schedules, newest first; `after` is the (created_at, id) of the last one seen."""
    query = sa.select(schedules)
    if owner is not None:
        query = query.where(schedules.c.owner == owner)
    if after:
        query = query.where(sa.tuple_(schedules.c.created_at, schedules.c.id) < sa.tuple_(*after))
    order = (schedules.c.created_at.desc(), schedules.c.id.desc())
    return list(conn.execute(query.order_by(*order).limit(limit)))


def count(conn: Connection, owner: str) -> int:
    return conn.execute(sa.select(sa.func.count()).where(schedules.c.owner == owner)).scalar_one()


def lock_owner(conn: Connection, owner: str) -> None:
    """Until this transaction ends, no other transaction that takes the same lock runs for
    `owner`: the count before an insert stays true (PostgreSQL: a transaction advisory lock on
    the owner; SQLite writes one at a time already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": f"schedules:{owner}"}
        )


def pause_owner(conn: Connection, owner: str) -> int:
    """Stop every enabled schedule of `owner` (its last key was revoked); how many. Each is
    resumed as any paused one: PATCH enabled=true (an admin, or the owner with a new key)."""
    query = (
        schedules.update()
        .where(schedules.c.owner == owner, schedules.c.enabled.is_(True))
        .values(enabled=False, next_run_at=None, updated_at=utcnow())
    )
    return conn.execute(query).rowcount


def update(conn: Connection, schedule_id: uuid.UUID, owner: str | None = None, **values: Any) -> bool:
    query = _owned(schedules.update(), schedule_id, owner)
    return conn.execute(query.values(updated_at=utcnow(), **values)).rowcount == 1


def delete(conn: Connection, schedule_id: uuid.UUID, owner: str | None = None) -> bool:
    return conn.execute(_owned(schedules.delete(), schedule_id, owner)).rowcount == 1


def due(conn: Connection, now: datetime, limit: int = 100) -> list[Row]:
    """Enabled schedules whose next fire time has come."""
    query = (
        sa.select(schedules)
        .where(schedules.c.enabled.is_(True), schedules.c.next_run_at <= now)
        .order_by(schedules.c.next_run_at)
        .limit(limit)
    )
    return list(conn.execute(query))


def advance(
    conn: Connection, schedule_id: uuid.UUID, fired_at: datetime, next_run_at: datetime | None, task_id: Any
) -> bool:
    """Move a schedule past `fired_at` if nobody else has; True if this call did.

    `task_id` is the task this fire time made (None: it was made before, keep the one recorded).
    """
    values: dict[str, Any] = {"next_run_at": next_run_at, "last_run_at": fired_at, "updated_at": utcnow()}
    if task_id is not None:
        values["last_task_id"] = task_id
    query = schedules.update().where(schedules.c.id == schedule_id, schedules.c.next_run_at == fired_at)
    return conn.execute(query.values(**values)).rowcount == 1
