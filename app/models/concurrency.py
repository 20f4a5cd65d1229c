"""The queries behind concurrency keys (app/core/concurrency.py): a key's held slots, the tasks
waiting for one, and the admission of one of them.

A slot is the pair (concurrency_key, concurrency_slot) of a row in PENDING, STARTED or RETRYING,
under a partial unique index (ux_tasks_concurrency_slot): two rows never hold one slot, and the
write that moves a row out of those statuses frees its slot in the same statement.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import MESSAGE_COLUMNS, TaskStatus, tasks, touched, utcnow

HOLDING = (TaskStatus.PENDING, TaskStatus.STARTED, TaskStatus.RETRYING)


def _holding_in(table: sa.Table | sa.Alias) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.concurrency_slot.is_not(None), table.c.status.in_([s.value for s in HOLDING]))


def _awaiting_in(table: sa.Table | sa.Alias) -> sa.ColumnElement[bool]:
    return sa.and_(
        table.c.concurrency_key.is_not(None),
        table.c.status == TaskStatus.WAITING,
        table.c.concurrency_slot.is_(None),
        table.c.paused_queue.is_(None),  # held by a paused queue: not admitted until it resumes
        table.c.rate_limit.is_(None),  # waiting for its turn under a rate limit: not yet
    )


_holding, _awaiting = _holding_in(tasks), _awaiting_in(tasks)


def _free_slot() -> sa.ScalarSelect[int]:
    """The lowest slot of the key (`admit_key`) under `admit_limit` that no row holds, while none of
    its tasks waits (they come first); NULL otherwise. PostgreSQL's generate_series."""
    other = tasks.alias("other")
    key = sa.bindparam("admit_key", type_=tasks.c.concurrency_key.type)
    slots = (
        sa.func.generate_series(0, sa.bindparam("admit_limit", type_=sa.Integer) - 1)
        .table_valued("slot")
        .render_derived()
    )
    held = sa.select(other.c.concurrency_slot).where(other.c.concurrency_key == key, _holding_in(other))
    queued = sa.select(other.c.id).where(other.c.concurrency_key == key, _awaiting_in(other)).exists()
    return sa.select(sa.func.min(slots.c.slot)).where(slots.c.slot.not_in(held), ~queued).scalar_subquery()


_FREE = _free_slot()
# A queued submit's one statement on PostgreSQL: the row, PENDING with the free slot if there is
# one, else WAITING. Its caller holds the key's lock, so the statement's snapshot sees every
# admission before it.
_INSERT_ADMITTED = (
    tasks.insert()
    .values(
        created_at=utcnow(),
        updated_at=utcnow(),
        concurrency_slot=_FREE,
        status=sa.case((_FREE.is_(None), TaskStatus.WAITING.value), else_=TaskStatus.PENDING.value),
    )
    .returning(tasks.c.created_at, tasks.c.status, tasks.c.concurrency_slot)
)


def insert_admitted(conn: Connection, values: dict[str, Any]) -> Row:
    """Insert a task of a key (PostgreSQL), admitted at once if a slot is free and none of the
    key's tasks waits: its created_at, status and slot."""
    given = {name: value for name, value in values.items() if name not in ("status", "concurrency_slot")}
    bound = given | {"admit_key": values["concurrency_key"], "admit_limit": values["concurrency_limit"]}
    return conn.execute(_INSERT_ADMITTED, bound).one()


def lock(conn: Connection, key: str) -> None:
    """Admissions of one key take turns until the end of the transaction (PostgreSQL: an advisory
    lock on the key's hash; SQLite has one writer at a time already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK, {"lock_key": key})


_LOCK = sa.select(
    sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(sa.bindparam("lock_key", type_=sa.Text), 0))
)


def held(conn: Connection, key: str) -> list[Row]:
    """The slots of `key` held now: each one's number and owner."""
    query = sa.select(tasks.c.concurrency_slot, tasks.c.owner).where(tasks.c.concurrency_key == key, _holding)
    return list(conn.execute(query))


def waiting(conn: Connection, key: str, limit: int) -> list[Row]:
    """Up to `limit` of the tasks waiting for a slot of `key`, oldest first, locked (rows another
    transaction has locked, being cancelled, are skipped)."""
    query = (
        sa.select(*MESSAGE_COLUMNS, tasks.c.owner, tasks.c.concurrency_limit, tasks.c.created_at)
        .where(tasks.c.concurrency_key == key, _awaiting)
        .order_by(tasks.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(query))


def take(conn: Connection, task_id: uuid.UUID, slot: int) -> bool:
    """A waiting task admitted: PENDING, holding `slot`."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, _awaiting)
        .values(status=TaskStatus.PENDING, concurrency_slot=slot, **touched())
    )
    return conn.execute(query).rowcount == 1


def unfinished(conn: Connection, key: str) -> list[Row]:
    """The key's tasks not ended (waiting for a slot or holding one): id and status, oldest first."""
    query = (
        sa.select(tasks.c.id, tasks.c.status)
        .where(tasks.c.concurrency_key == key, sa.or_(_holding, _awaiting))
        .order_by(tasks.c.created_at)
    )
    return list(conn.execute(query))


def awaited_keys(conn: Connection, before: datetime, limit: int = 100) -> list[str]:
    """Keys with a task waiting for a slot since before `before` (the sweep's fallback)."""
    query = (
        sa.select(tasks.c.concurrency_key)
        .where(_awaiting, tasks.c.updated_at < before)
        .group_by(tasks.c.concurrency_key)
        .limit(limit)
    )
    return list(conn.scalars(query))


def summary(conn: Connection, owner: str | None = None) -> list[Row]:
    """Per key with an unfinished task: its limit, how many hold a slot and how many wait."""
    holding = sa.func.count().filter(_holding)
    awaiting = sa.func.count().filter(_awaiting)
    query = (
        sa.select(
            tasks.c.concurrency_key.label("key"),
            sa.func.max(tasks.c.concurrency_limit).label("limit"),
            holding.label("running"),
            awaiting.label("waiting"),
        )
        .where(tasks.c.concurrency_key.is_not(None), sa.or_(_holding, _awaiting))
        .group_by(tasks.c.concurrency_key)
        .order_by(tasks.c.concurrency_key)
    )
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return list(conn.execute(query))
