"""The schedules table (recurring tasks) and every query on it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import metadata, utcnow
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
    sa.Index("ux_schedules_name", "name", unique=True),
    sa.Index("ix_schedules_enabled_next_run_at", "enabled", "next_run_at"),
)


def insert(conn: Connection, schedule_id: uuid.UUID, **values: Any) -> None:
    conn.execute(
        schedules.insert().values(id=schedule_id, created_at=utcnow(), updated_at=utcnow(), **values)
    )


def get(conn: Connection, schedule_id: uuid.UUID) -> Row | None:
    return conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)).first()


def list_all(conn: Connection) -> list[Row]:
    return list(conn.execute(sa.select(schedules).order_by(schedules.c.name)))


def update(conn: Connection, schedule_id: uuid.UUID, **values: Any) -> bool:
    query = schedules.update().where(schedules.c.id == schedule_id)
    return conn.execute(query.values(updated_at=utcnow(), **values)).rowcount == 1


def delete(conn: Connection, schedule_id: uuid.UUID) -> bool:
    return conn.execute(schedules.delete().where(schedules.c.id == schedule_id)).rowcount == 1


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
