"""The workflows table, and the queries on a workflow's steps (task rows with its workflow_id)."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import DEFAULT_OWNER, TERMINAL, TaskStatus, metadata, tasks, touched, utcnow
from app.models.types import JSONValue, UTCDateTime


class WorkflowStatus(enum.StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("owner", sa.String(100), nullable=False, server_default=DEFAULT_OWNER),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", JSONValue, nullable=False),
    # The steps as submitted, normalised: [{"id", "task", "after", "join", "parameters"}, ...].
    sa.Column("steps", JSONValue, nullable=False),
    sa.Column("on_failure", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),  # why it FAILED or was CANCELLED
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column("idempotency_key", sa.String(200)),  # the submit's, kept 24 hours
    sa.Column("request_hash", sa.String(64)),  # a hash of the submit's body, to tell a replay
    sa.Column("webhook", JSONValue),  # where its ending is delivered: {"url", "events"} (null: nowhere)
    sa.Index("ix_workflows_created_at_id", "created_at", "id"),
    sa.Index("ux_workflows_owner_idempotency_key", "owner", "idempotency_key", unique=True),
)

# What a workflow's page shows of each step, and what releasing one needs.
STEP_COLUMNS = (
    tasks.c.id, tasks.c.step, tasks.c.name, tasks.c.status, tasks.c.result, tasks.c.error,
    tasks.c.waiting_parents, tasks.c.attempts, tasks.c.priority, tasks.c.timeout_seconds, tasks.c.created_at,
    tasks.c.queue, tasks.c.owner, tasks.c.workflow_id,
    tasks.c.started_at, tasks.c.completed_at, tasks.c.paused_queue, tasks.c.rate_limit,
)  # fmt: skip
# A step WAITING for its parents or its turn in a map, not one a paused queue holds
# (app/core/pauses.py) or one waiting under a rate limit (app/core/rate_limits.py): their parents
# have ended, and the resume or beat publishes them.
_waiting = sa.and_(
    tasks.c.status == TaskStatus.WAITING, tasks.c.paused_queue.is_(None), tasks.c.rate_limit.is_(None)
)


def insert(conn: Connection, values: Mapping[str, Any]) -> None:
    conn.execute(workflows.insert().values(**values, created_at=utcnow(), updated_at=utcnow()))


def get(conn: Connection, workflow_id: uuid.UUID, owner: str | None = None) -> Row | None:
    query = sa.select(workflows).where(workflows.c.id == workflow_id)
    if owner is not None:
        query = query.where(workflows.c.owner == owner)
    return conn.execute(query).first()


def by_idempotency_key(conn: Connection, owner: str, key: str) -> Row | None:
    query = sa.select(workflows).where(workflows.c.owner == owner, workflows.c.idempotency_key == key)
    return conn.execute(query).first()


def release_idempotency_key(conn: Connection, owner: str, key: str, before: Any) -> None:
    """Forget `owner`'s key first used before `before`, so it may name a new workflow."""
    query = workflows.update().where(
        workflows.c.owner == owner, workflows.c.idempotency_key == key, workflows.c.created_at < before
    )
    conn.execute(query.values(idempotency_key=None))


def statuses(conn: Connection, workflow_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of `workflow_ids` that is a workflow (a waiter's read-back)."""
    query = sa.select(workflows.c.id, workflows.c.status).where(workflows.c.id.in_(workflow_ids))
    return {row.id: row.status for row in conn.execute(query)}


def lock(conn: Connection, workflow_id: uuid.UUID) -> Row | None:
    """The workflow's row, locked until the transaction ends: the endings of its steps take turns
    (SQLite has one writer at a time already)."""
    return conn.execute(sa.select(workflows).where(workflows.c.id == workflow_id).with_for_update()).first()


def steps(conn: Connection, workflow_id: uuid.UUID) -> dict[str, Row]:
    """Each step's row by its key, in the order they were written."""
    query = (
        sa.select(*STEP_COLUMNS)
        .where(tasks.c.workflow_id == workflow_id, tasks.c.step.is_not(None))
        .order_by(tasks.c.created_at, tasks.c.step)
    )
    return {row.step: row for row in conn.execute(query)}


def lower_waiting(conn: Connection, workflow_id: uuid.UUID, keys: Iterable[str]) -> list[str]:
    """One parent of each WAITING step of `keys` has ended: the keys whose count reached 0."""
    keys = list(keys)
    if not keys:
        return []
    query = (
        tasks.update()
        .where(tasks.c.workflow_id == workflow_id, tasks.c.step.in_(keys), _waiting)
        .values(waiting_parents=tasks.c.waiting_parents - 1, **touched())
        .returning(tasks.c.step, tasks.c.waiting_parents)
    )
    return [row.step for row in conn.execute(query) if row.waiting_parents <= 0]


def insert_steps(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Step rows in one multi-row INSERT, stamped by the database's clock (to the microsecond, as
    every row is)."""
    if rows:
        conn.execute(tasks.insert().values(created_at=utcnow(), updated_at=utcnow()), rows)


def retire(conn: Connection, task_ids: list[uuid.UUID]) -> None:
    """Rows a resume replaces: they keep their outcome and workflow, and give up their step key."""
    if task_ids:
        conn.execute(tasks.update().where(tasks.c.id.in_(task_ids)).values(step=None, **touched()))


def parameters_of(conn: Connection, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    query = sa.select(tasks.c.id, tasks.c.parameters).where(tasks.c.id.in_(task_ids))
    return {row.id: row.parameters for row in conn.execute(query)}


def reopen(conn: Connection, workflow_id: uuid.UUID) -> None:
    """An ended workflow RUNNING again (a resume)."""
    conn.execute(
        workflows.update()
        .where(workflows.c.id == workflow_id)
        .values(status=WorkflowStatus.RUNNING, error=None, completed_at=None, updated_at=utcnow())
    )


def items(conn: Connection, workflow_id: uuid.UUID, key: str) -> list[Row]:
    """A map step's item rows (`key[0]`, `key[1]`, ...), in no particular order."""
    query = sa.select(*STEP_COLUMNS).where(
        tasks.c.workflow_id == workflow_id, tasks.c.step.startswith(f"{key}[", autoescape=True)
    )
    return list(conn.execute(query))


def expand(conn: Connection, head_id: uuid.UUID, rows: list[dict[str, Any]]) -> None:
    """A map's items written in one multi-row INSERT; its head then waits for them."""
    insert_steps(conn, rows)
    conn.execute(tasks.update().where(tasks.c.id == head_id).values(waiting_parents=len(rows), **touched()))


def lower_siblings(conn: Connection, workflow_id: uuid.UUID, key: str) -> list[Row]:
    """One item of map `key` has ended: each WAITING item's turn is one nearer; the rows of those
    whose turn has come."""
    query = (
        tasks.update()
        .where(
            tasks.c.workflow_id == workflow_id,
            _waiting,
            tasks.c.step.startswith(f"{key}[", autoescape=True),
        )
        .values(waiting_parents=tasks.c.waiting_parents - 1, **touched())
        .returning(tasks.c.id, tasks.c.waiting_parents)
    )
    return [row for row in conn.execute(query) if row.waiting_parents <= 0]


def release_item(conn: Connection, task_id: uuid.UUID) -> Row | None:
    """A map's item WAITING -> PENDING, its parameters as the expansion resolved them: its
    parameters, priority and timeout, or None if it was not WAITING."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, _waiting)
        .values(status=TaskStatus.PENDING, waiting_parents=None, **touched())
        .returning(tasks.c.parameters, tasks.c.priority, tasks.c.timeout_seconds)
    )
    return conn.execute(query).first()


def release(conn: Connection, task_id: uuid.UUID, parameters: Any) -> bool:
    """WAITING -> PENDING with its parameters resolved; False if it was not WAITING."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, _waiting)
        .values(status=TaskStatus.PENDING, parameters=parameters, waiting_parents=None, **touched())
    )
    return conn.execute(query).rowcount == 1


def unfinished(conn: Connection, workflow_id: uuid.UUID) -> list[Row]:
    """The steps not ended yet: their ids, keys and statuses."""
    query = sa.select(tasks.c.id, tasks.c.step, tasks.c.status).where(
        tasks.c.workflow_id == workflow_id, tasks.c.status.not_in(list(TERMINAL))
    )
    return list(conn.execute(query))


def any_unfinished(conn: Connection, workflow_id: uuid.UUID) -> bool:
    query = sa.select(tasks.c.id).where(
        tasks.c.workflow_id == workflow_id, tasks.c.status.not_in(list(TERMINAL))
    )
    return conn.execute(query.limit(1)).first() is not None


def finish(conn: Connection, workflow_id: uuid.UUID, status: WorkflowStatus, error: str | None) -> bool:
    query = (
        workflows.update()
        .where(workflows.c.id == workflow_id, workflows.c.status == WorkflowStatus.RUNNING)
        .values(status=status, error=error, completed_at=utcnow(), updated_at=utcnow())
    )
    return conn.execute(query).rowcount == 1


def list_page(
    conn: Connection, limit: int, owner: str | None, status: str | None, name: str | None, after: Any = None
) -> list[Row]:
    """Newest first; `after` is the (created_at, id) of the previous page's last row."""
    query = sa.select(workflows)
    if owner is not None:
        query = query.where(workflows.c.owner == owner)
    if status is not None:
        query = query.where(workflows.c.status == status)
    if name is not None:
        query = query.where(workflows.c.name == name)
    if after is not None:
        query = query.where(sa.tuple_(workflows.c.created_at, workflows.c.id) < sa.tuple_(*after))
    order = (workflows.c.created_at.desc(), workflows.c.id.desc())
    return list(conn.execute(query.order_by(*order).limit(limit)))


def waiting_since(conn: Connection, before: Any, limit: int = 500) -> list[Row]:
    """WAITING steps untouched since `before`: their workflows and keys (the sweep's look); a map
    step's waiting items are looked after by its own repair."""
    query = (
        sa.select(tasks.c.workflow_id, tasks.c.step)
        .where(
            _waiting,
            tasks.c.workflow_id.is_not(None),  # not a task waiting for a slot of its concurrency key
            tasks.c.updated_at < before,
            ~tasks.c.step.contains("["),  # a map's items are its step's to look after
        )
        .limit(limit)
    )
    return list(conn.execute(query))
