"""The tasks table, the statuses, and every query on it."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.compiler import compiles

from app.models.types import JSONValue, UTCDateTime

metadata = sa.MetaData()


class utcnow(sa.sql.expression.FunctionElement):
    """The database's current time, to the microsecond, in the format SQLAlchemy stores.

    PostgreSQL: now(). SQLite's CURRENT_TIMESTAMP has one-second resolution and another
    text format, which would break ordering and the list cursor; strftime('%f') gives
    milliseconds, padded to SQLAlchemy's six digits so stored and bound values compare.
    """

    type = UTCDateTime()
    inherit_cache = True


@compiles(utcnow)
def _utcnow_default(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "now()"


@compiles(utcnow, "sqlite")
def _utcnow_sqlite(element: utcnow, compiler: Any, **kw: Any) -> str:
    return "strftime('%Y-%m-%d %H:%M:%f000', 'now')"


class TaskStatus(enum.StrEnum):
    WAITING = "WAITING"  # a workflow's step whose parents have not all ended; no message yet
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRYING = "RETRYING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)
UNFINISHED = (
    TaskStatus.WAITING,
    TaskStatus.SCHEDULED,
    TaskStatus.PENDING,
    TaskStatus.STARTED,
    TaskStatus.RETRYING,
)
# Who owns the rows made in open mode, and the rows made before API keys existed.
DEFAULT_OWNER = "default"

# The partial indexes over keyed rows (app/core/concurrency.py); the migration repeats them.
SLOT_HELD = "concurrency_slot IS NOT NULL AND status IN ('PENDING', 'STARTED', 'RETRYING')"
SLOT_AWAITED = "concurrency_key IS NOT NULL AND status = 'WAITING' AND concurrency_slot IS NULL"
# A task a paused queue holds (app/core/pauses.py); the migration repeats it.
HELD = "paused_queue IS NOT NULL AND status = 'WAITING'"
# A task waiting for its turn under a rate limit (app/core/rate_limits.py); the migration repeats it.
PACED = "rate_limit IS NOT NULL AND status = 'WAITING'"

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("parameters", JSONValue, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("result", JSONValue),
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("queue", sa.String(100), nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="5"),
    sa.Column("progress", sa.SmallInteger),
    sa.Column("owner", sa.String(100), nullable=False, server_default=DEFAULT_OWNER),
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column(
        "created_at",
        UTCDateTime(),
        nullable=False,
        server_default=sa.func.now(),
    ),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("completed_at", UTCDateTime()),
    sa.Column(
        "updated_at",
        UTCDateTime(),
        nullable=False,
        server_default=sa.func.now(),
    ),
    sa.Column("retry_of", sa.Uuid),
    sa.Column("cancel_requested_at", UTCDateTime()),
    sa.Column("request_hash", sa.String(64)),
    sa.Column("progress_message", sa.String(200)),
    sa.Column("run_at", UTCDateTime()),
    sa.Column("schedule_id", sa.Uuid),
    sa.Column("scheduled_for", UTCDateTime()),
    sa.Column("worker", sa.String(200)),
    # Raised by every write (see _touch): the id of the task's change events.
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    # {"url": ..., "events": [...]}: told when the task ends (app/core/webhooks/deliveries.py); null: nobody.
    sa.Column("webhook", JSONValue),
    # {"max_retries": n, "on": "any" | "transient"} given at submit; null: the task type's policy.
    sa.Column("retry_policy", JSONValue),
    # The hard time limit in seconds given at submit (the soft one at two thirds); null: its type's.
    sa.Column("timeout_seconds", sa.Integer),
    # Up to 10 "key:value" strings, given at submit or by its schedule; null: none.
    sa.Column("tags", JSONValue),
    # Secrets its parameters show masked (http_request's credential headers), sealed; null: none.
    sa.Column("sealed", sa.Text),
    # A workflow's step (app/core/workflows): its workflow, its key ("resize"), and while WAITING
    # how many of its parents have not ended.
    sa.Column("workflow_id", sa.Uuid),
    sa.Column("step", sa.String(200)),
    sa.Column("waiting_parents", sa.Integer),
    sa.Column("cancel_reason", sa.String(200)),  # why it was asked to stop, if not by its client
    # Its concurrency key (app/core/concurrency.py), the key's limit for it, and while it may run
    # (PENDING, STARTED, RETRYING) the slot it holds: at most `limit` rows of a key hold one.
    sa.Column("concurrency_key", sa.String(300)),
    sa.Column("concurrency_limit", sa.SmallInteger),
    sa.Column("concurrency_slot", sa.SmallInteger),
    # While WAITING: the paused queue that holds it (app/core/pauses.py); null otherwise.
    sa.Column("paused_queue", sa.String(100)),
    # Its run's turn under a rate limit (app/core/rate_limits.py): while WAITING for it, the limit
    # and the time its token is reserved for; once released, the time alone (its token is held).
    sa.Column("rate_limit", sa.String(100)),
    sa.Column("rate_until", UTCDateTime()),
    sa.CheckConstraint("concurrency_slot < concurrency_limit", name="ck_tasks_concurrency_slot"),
    # A slot is held while the row is in one of these statuses: the write that ends the task frees
    # it, whoever writes it (the worker, a cancel, the sweep). Over keyed rows only.
    sa.Index(
        "ux_tasks_concurrency_slot",
        "concurrency_key",
        "concurrency_slot",
        unique=True,
        postgresql_where=sa.text(SLOT_HELD),
        sqlite_where=sa.text(SLOT_HELD),
    ),
    # The tasks waiting for a slot of their key, in the order they are admitted.
    sa.Index(
        "ix_tasks_concurrency_waiting",
        "concurrency_key",
        "created_at",
        postgresql_where=sa.text(SLOT_AWAITED),
        sqlite_where=sa.text(SLOT_AWAITED),
    ),
    # Over workflows' steps only: a plain task's insert writes no entry into it.
    sa.Index(
        "ux_tasks_workflow_step",
        "workflow_id",
        "step",
        unique=True,
        postgresql_where=sa.text("workflow_id IS NOT NULL"),
        sqlite_where=sa.text("workflow_id IS NOT NULL"),
    ),
    sa.Index("ix_tasks_status_run_at", "status", "run_at"),
    # Retries only: whether a task was retried already (a bulk retry skips it).
    sa.Index(
        "ix_tasks_retry_of",
        "retry_of",
        postgresql_where=sa.text("retry_of IS NOT NULL"),
        sqlite_where=sa.text("retry_of IS NOT NULL"),
    ),
    sa.Index("ix_tasks_status_started_at", "status", "started_at"),
    sa.Index("ux_tasks_schedule_fire", "schedule_id", "scheduled_for", unique=True),
    sa.Index("ux_tasks_owner_idempotency_key", "owner", "idempotency_key", unique=True),
    sa.Index("ix_tasks_created_at_id", "created_at", "id"),
    sa.Index("ix_tasks_owner_created_at_id", "owner", "created_at", "id"),
    sa.Index("ix_tasks_owner_status_created_at_id", "owner", "status", "created_at", "id"),
    sa.Index("ix_tasks_status_created_at_id", "status", "created_at", "id"),
    sa.Index("ix_tasks_name_created_at_id", "name", "created_at", "id"),
    # Finished rows only: an insert adds nothing to it.
    sa.Index(
        "ix_tasks_completed_at",
        "completed_at",
        postgresql_where=sa.text("completed_at IS NOT NULL"),
        sqlite_where=sa.text("completed_at IS NOT NULL"),
    ),
    # The tasks paused queues hold, in the order a resume releases them.
    sa.Index(
        "ix_tasks_paused_queue",
        "paused_queue",
        "priority",
        "created_at",
        postgresql_where=sa.text(HELD),
        sqlite_where=sa.text(HELD),
    ),
    # The tasks waiting for their turn under a rate limit, by when it comes (beat's due loop).
    sa.Index(
        "ix_tasks_rate_until", "rate_until", postgresql_where=sa.text(PACED), sqlite_where=sa.text(PACED)
    ),
    # Small (PENDING rows only): the oldest PENDING task of a queue without a walk over the rest.
    sa.Index(
        "ix_tasks_pending_queue_created_at",
        "queue",
        "created_at",
        postgresql_where=sa.text("status = 'PENDING'"),
        sqlite_where=sa.text("status = 'PENDING'"),
    ),
)


# A row per paused queue (app/core/pauses.py): the claim starts no task of one.
paused_queues = sa.Table(
    "paused_queues",
    metadata,
    sa.Column("queue", sa.String(100), primary_key=True),
    sa.Column("paused_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("paused_by", sa.String(100), nullable=False),  # the owner of the admin's key
)


def touched() -> dict[str, Any]:
    """What every write of a task sets besides its own values: the time, and the next revision."""
    return {"updated_at": utcnow(), "revision": tasks.c.revision + 1}


_not_terminal = tasks.c.status.not_in([s.value for s in TERMINAL])
# A message may start a row in these states only. SCHEDULED waits for the scheduler to make it
# PENDING; a STARTED row is running, or its worker died and the recovery sweep requeues it, so a
# duplicate message (a redelivery, a republish) never runs a task a second time at once. A task
# of a paused queue does not start (its worker holds it instead: app/models/pauses.py).
_claimable = sa.and_(
    tasks.c.status.in_([TaskStatus.PENDING, TaskStatus.RETRYING]),
    tasks.c.queue.not_in(sa.select(paused_queues.c.queue)),
)


def insert(
    conn: Connection,
    task_id: uuid.UUID,
    name: str,
    parameters: dict[str, Any],
    queue: str,
    **extra: Any,
) -> datetime:
    """Insert a new row, PENDING unless `extra` says otherwise (it may set any other column);
    its created_at, by the database's clock."""
    values = {"id": task_id, "name": name, "parameters": parameters, "queue": queue}
    values["status"] = extra.pop("status", TaskStatus.PENDING)
    return insert_values(conn, values | extra)


def insert_values(conn: Connection, values: Mapping[str, Any]) -> datetime:
    """Insert a row of `values` (id, name, parameters, queue, status and any other column); its
    created_at, by the database's clock."""
    return conn.execute(_INSERT, values).scalar_one()


def new_row(values: Mapping[str, Any]) -> SimpleNamespace:
    """The row an insert of `values` made (with its created_at), as reading it back would give
    it: every column `values` leaves out has its default."""
    return SimpleNamespace(**(_DEFAULTS | dict(values)))


# Built once: the values travel as parameters, so a submit neither builds a statement nor
# computes its cache key (bench/README.md has what that cost).
_INSERT = tasks.insert().values(created_at=utcnow(), updated_at=utcnow()).returning(tasks.c.created_at)
_INSERT_MANY = (
    tasks.insert().values(created_at=utcnow(), updated_at=utcnow()).returning(tasks.c.id, tasks.c.created_at)
)
_DEFAULTS: dict[str, Any] = {column.name: None for column in tasks.c} | {
    "attempts": 0,
    "priority": 5,
    "owner": DEFAULT_OWNER,
    "revision": 1,
}


def _owned(query: Any, task_id: uuid.UUID, owner: str | None) -> Any:
    """`query` narrowed to one task, and to `owner`'s rows unless `owner` is None (an admin)."""
    query = query.where(tasks.c.id == task_id)
    return query if owner is None else query.where(tasks.c.owner == owner)


def get(conn: Connection, task_id: uuid.UUID, owner: str | None = None) -> Row | None:
    return conn.execute(_owned(sa.select(tasks), task_id, owner)).first()


def get_output(conn: Connection, task_id: uuid.UUID, owner: str | None = None) -> Row | None:
    """Only the columns the reference output shows, and the owner (the cache is per owner)."""
    columns = (
        tasks.c.status,
        tasks.c.result,
        tasks.c.error,
        tasks.c.progress,
        tasks.c.progress_message,
        tasks.c.owner,
    )
    return conn.execute(_owned(sa.select(*columns), task_id, owner)).first()


def delete_unstarted(conn: Connection, task_id: uuid.UUID | list[uuid.UUID]) -> None:
    """Remove rows that were never published (their submit failed)."""
    ids = task_id if isinstance(task_id, list) else [task_id]
    conn.execute(tasks.delete().where(tasks.c.id.in_(ids), tasks.c.status == TaskStatus.PENDING))


# The columns a batched submit may set: every row of one multi-row INSERT names the same ones.
BATCH_COLUMNS = ("id", "name", "parameters", "queue", "status", "retry_of", "priority", "owner", "webhook",
                 "retry_policy", "timeout_seconds", "tags", "sealed")  # fmt: skip


def insert_many(conn: Connection, rows: list[dict[str, Any]]) -> dict[uuid.UUID, datetime]:
    """Insert PENDING rows with one statement (SQLAlchemy sends a multi-row INSERT); each row
    gives its own values for BATCH_COLUMNS, None for those it does not set. Each row's
    created_at, by its id."""
    values = [
        {"status": TaskStatus.PENDING} | {c: row.get(c) for c in BATCH_COLUMNS if c != "status"}
        for row in rows
    ]
    return {row.id: row.created_at for row in conn.execute(_INSERT_MANY, values)}


def ending_facts(conn: Connection, task_id: uuid.UUID) -> tuple[uuid.UUID | None, str | None]:
    """What its ending must lock first: the workflow the task is a step of and its concurrency key
    (each None when it has none, or when there is no such task)."""
    query = sa.select(tasks.c.workflow_id, tasks.c.concurrency_key).where(tasks.c.id == task_id)
    row = conn.execute(query).first()
    return (None, None) if row is None else (row.workflow_id, row.concurrency_key)


def claim_row(conn: Connection, task_id: uuid.UUID, worker: str | None = None) -> Row | None:
    """Mark a PENDING or RETRYING row STARTED by `worker`: its attempts, name, queue and times
    (created, due, started), or None if it may not run."""
    return conn.execute(_CLAIM, {"claim_id": task_id, "claim_worker": worker}).first()


# What every write of a terminal status returns (app/core/endings.py reads it).
ENDED = (
    tasks.c.name, tasks.c.owner, tasks.c.webhook, tasks.c.progress, tasks.c.progress_message,
    tasks.c.workflow_id, tasks.c.step, tasks.c.concurrency_key,
)  # fmt: skip

# The statements a worker runs for every task are built once; the values travel as parameters.
_CLAIM = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("claim_id"), _claimable)
    .values(
        status=TaskStatus.STARTED,
        attempts=tasks.c.attempts + 1,
        started_at=utcnow(),
        **touched(),
        worker=sa.bindparam("claim_worker", type_=tasks.c.worker.type),
        rate_until=None,  # its token is spent: a retry takes another
    )
    .returning(
        tasks.c.attempts,
        tasks.c.name,
        tasks.c.queue,
        tasks.c.created_at,
        tasks.c.run_at,
        tasks.c.started_at,
        tasks.c.webhook.is_not(None).label("has_webhook"),
        tasks.c.workflow_id,
        tasks.c.step,
        tasks.c.retry_policy,
        tasks.c.owner,
        tasks.c.concurrency_key,
    )
)


def finish(
    conn: Connection,
    task_id: uuid.UUID,
    status: TaskStatus,
    result: Any = None,
    error: str | None = None,
) -> Row | None:
    """Record a terminal outcome unless one is already recorded.

    Returns the row's ENDED columns if this call wrote the outcome, else None.
    """
    values = {"finish_id": task_id, "finish_status": status, "finish_result": result, "finish_error": error}
    return conn.execute(_FINISH, values).first()


_FINISH = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("finish_id"), _not_terminal)
    .values(
        status=sa.bindparam("finish_status", type_=tasks.c.status.type),
        result=sa.bindparam("finish_result", type_=tasks.c.result.type),
        error=sa.bindparam("finish_error", type_=tasks.c.error.type),
        completed_at=utcnow(),
        **touched(),
    )
    .returning(*ENDED)
)


def mark_retrying(conn: Connection, task_id: uuid.UUID, error: str) -> bool:
    """The running attempt failed for a transient reason and a retry is about to be sent."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == TaskStatus.STARTED)
        .values(status=TaskStatus.RETRYING, error=error, **touched())
    )
    return conn.execute(query).rowcount == 1


def database_now(conn: Connection) -> datetime:
    """The database's clock, so every process compares times against one clock."""
    return conn.execute(sa.select(utcnow())).scalar_one()


def untouched_since(conn: Connection, status: str, before: datetime, limit: int = 1000) -> list[Row]:
    """Rows in `status` not touched since `before`: PENDING never published or its message lost;
    RETRYING whose retry message was lost."""
    query = (
        sa.select(
            tasks.c.id,
            tasks.c.name,
            tasks.c.parameters,
            tasks.c.priority,
            tasks.c.status,
            tasks.c.timeout_seconds,
            tasks.c.sealed,
        )
        .where(tasks.c.status == status, tasks.c.updated_at < before)
        .order_by(tasks.c.created_at)
        .limit(limit)
    )
    return list(conn.execute(query))


def started_before(conn: Connection, before: datetime, limit: int = 1000) -> list[Row]:
    """STARTED rows whose attempt began before `before`, with the worker that claimed them."""
    columns = (
        tasks.c.id,
        tasks.c.name,
        tasks.c.parameters,
        tasks.c.priority,
        tasks.c.attempts,
        tasks.c.worker,
        tasks.c.retry_policy,
        tasks.c.timeout_seconds,
        tasks.c.sealed,
    )
    query = (
        sa.select(*columns)
        .where(tasks.c.status == TaskStatus.STARTED, tasks.c.started_at < before)
        .order_by(tasks.c.started_at)
        .limit(limit)
    )
    return list(conn.execute(query))


def fail_abandoned(conn: Connection, task_id: uuid.UUID, attempts: int, error: str) -> Row | None:
    """FAILED, if the row is still the STARTED attempt the sweep saw: its ENDED columns, else None."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == TaskStatus.STARTED, tasks.c.attempts == attempts)
        .values(status=TaskStatus.FAILED, error=error, completed_at=utcnow(), **touched())
        .returning(*ENDED)
    )
    return conn.execute(query).first()


def requeue(conn: Connection, task_id: uuid.UUID, from_status: str, attempts: int | None = None) -> bool:
    """Back to PENDING (and touched) if the row is still as the sweep saw it."""
    query = tasks.update().where(tasks.c.id == task_id, tasks.c.status == from_status)
    if attempts is not None:
        query = query.where(tasks.c.attempts == attempts)
    query = query.values(status=TaskStatus.PENDING, **touched())
    return conn.execute(query).rowcount == 1


CANCELLABLE = (TaskStatus.WAITING, TaskStatus.SCHEDULED, TaskStatus.PENDING, TaskStatus.RETRYING)


def cancel(conn: Connection, task_id: uuid.UUID, owner: str | None = None) -> Row | None:
    """CANCELLED at once if the task has not started: its ENDED columns if this call did it."""
    query = (
        _owned(tasks.update(), task_id, owner)
        .where(tasks.c.status.in_([s.value for s in CANCELLABLE]))
        .values(status=TaskStatus.CANCELLED, completed_at=utcnow(), **touched())
        .returning(*ENDED)
    )
    return conn.execute(query).first()


def request_cancel(
    conn: Connection, task_id: uuid.UUID, owner: str | None = None, reason: str | None = None
) -> bool:
    """Mark a STARTED task; it stops at its next check between steps. `reason`: why, when its
    client did not ask (its workflow did)."""
    query = (
        _owned(tasks.update(), task_id, owner)
        .where(tasks.c.status == TaskStatus.STARTED)
        .values(
            cancel_requested_at=sa.func.coalesce(tasks.c.cancel_requested_at, utcnow()),
            cancel_reason=sa.func.coalesce(tasks.c.cancel_reason, reason),
            **touched(),
        )
    )
    return conn.execute(query).rowcount == 1


def report_progress(conn: Connection, task_id: uuid.UUID, percent: int, message: str | None) -> bool:
    """Progress of a running task (never of a finished one)."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == TaskStatus.STARTED)
        .values(progress=percent, progress_message=message, **touched())
    )
    return conn.execute(query).rowcount == 1


def cancel_requested(conn: Connection, task_id: uuid.UUID) -> str | None:
    """Why the task was asked to stop ("" when its client asked), or None if it was not."""
    query = sa.select(tasks.c.cancel_requested_at, tasks.c.cancel_reason).where(tasks.c.id == task_id)
    row = conn.execute(query).first()
    return None if row is None or row.cancel_requested_at is None else (row.cancel_reason or "")


def by_idempotency_key(conn: Connection, owner: str, key: str) -> Row | None:
    query = sa.select(tasks).where(tasks.c.owner == owner, tasks.c.idempotency_key == key)
    return conn.execute(query).first()


def release_idempotency_key(conn: Connection, owner: str, key: str, before: datetime) -> None:
    """Forget `owner`'s key first used before `before`, so it may name a new task."""
    query = tasks.update().where(
        tasks.c.owner == owner, tasks.c.idempotency_key == key, tasks.c.created_at < before
    )
    conn.execute(query.values(idempotency_key=None))


def list_page(
    conn: Connection,
    limit: int,
    statuses: list[str] | None = None,
    name: str | None = None,
    schedule_id: uuid.UUID | None = None,
    workflow_id: uuid.UUID | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    after: tuple[datetime, uuid.UUID] | None = None,
    owner: str | None = None,
    tag: list[str] | None = None,
    not_retried: bool = False,
) -> list[Row]:
    """Up to `limit` rows, newest first; `after` is the (created_at, id) of the last row already seen.
    `tag`: rows that carry every one of these tags; `not_retried`: rows no task is a retry of."""
    query = sa.select(tasks)
    if not_retried:
        retries = tasks.alias("retries")
        query = query.where(~sa.exists(sa.select(1).where(retries.c.retry_of == tasks.c.id)))
    if tag:
        query = query.where(tagged(conn, tag))
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    if statuses:
        query = query.where(tasks.c.status.in_(statuses))
    if name:
        query = query.where(tasks.c.name == name)
    if schedule_id:
        query = query.where(tasks.c.schedule_id == schedule_id)
    if workflow_id:
        query = query.where(tasks.c.workflow_id == workflow_id)
    if created_after:
        query = query.where(tasks.c.created_at >= created_after)
    if created_before:
        query = query.where(tasks.c.created_at < created_before)
    if after:
        query = query.where(sa.tuple_(tasks.c.created_at, tasks.c.id) < sa.tuple_(*after))
    order = (tasks.c.created_at.desc(), tasks.c.id.desc())
    return list(conn.execute(query.order_by(*order).limit(limit)))


def tagged(conn: Connection, tags: list[str]) -> Any:
    """Rows carrying every one of `tags`: on PostgreSQL a containment the GIN index ix_tasks_tags
    answers; on SQLite a look into each row's JSON list."""
    if conn.dialect.name == "postgresql":
        return sa.type_coerce(tasks.c.tags, JSONB).contains(sorted(set(tags)))
    each = sa.func.json_each(tasks.c.tags).table_valued("value")
    return sa.and_(*(sa.exists(sa.select(1).select_from(each).where(each.c.value == t)) for t in set(tags)))


def counts_by_queue(conn: Connection, owner: str | None = None) -> list[Row]:
    """(queue, status, count) of the unfinished rows (the status index finds them without
    reading the finished ones), one owner's when `owner` is given."""
    query = (
        sa.select(tasks.c.queue, tasks.c.status, sa.func.count())
        .where(tasks.c.status.not_in(list(TERMINAL)))
        .group_by(tasks.c.queue, tasks.c.status)
    )
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return list(conn.execute(query))


# What a task's message is made of (app/core/broker's Message): read wherever a row is published.
MESSAGE_COLUMNS = (
    tasks.c.id, tasks.c.name, tasks.c.parameters, tasks.c.priority, tasks.c.timeout_seconds, tasks.c.sealed,
)  # fmt: skip


def due(conn: Connection, now: datetime, limit: int = 500) -> list[Row]:
    """SCHEDULED rows whose time has come, oldest first."""
    query = (
        sa.select(*MESSAGE_COLUMNS, tasks.c.concurrency_key)
        .where(tasks.c.status == TaskStatus.SCHEDULED, tasks.c.run_at <= now)
        .order_by(tasks.c.run_at)
        .limit(limit)
    )
    return list(conn.execute(query))


def move(conn: Connection, task_id: uuid.UUID, from_status: str, to_status: str) -> bool:
    """One status to another if the row is still in the first; True if it moved."""
    query = (
        tasks.update()
        .where(tasks.c.id == task_id, tasks.c.status == from_status)
        .values(status=to_status, **touched())
    )
    return conn.execute(query).rowcount == 1


def rows(conn: Connection, task_ids: list[uuid.UUID]) -> list[Row]:
    """The rows of those of `task_ids` that exist, in one query."""
    return list(conn.execute(sa.select(tasks).where(tasks.c.id.in_(task_ids))))


def statuses(conn: Connection, task_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The status of each of `task_ids` that exists."""
    return dict(conn.execute(sa.select(tasks.c.id, tasks.c.status).where(tasks.c.id.in_(task_ids))).all())


def count_unfinished(conn: Connection, owner: str) -> int:
    """How many of `owner`'s tasks are not finished yet (the unfinished-tasks quota)."""
    query = sa.select(sa.func.count()).where(
        tasks.c.owner == owner, tasks.c.status.in_([s.value for s in UNFINISHED])
    )
    return conn.execute(query).scalar_one()


def delete_finished_before(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to `limit` terminal rows completed before `before`; how many went."""
    doomed = (
        sa.select(tasks.c.id)
        .where(
            tasks.c.status.in_([s.value for s in TERMINAL]),
            tasks.c.created_at < before,  # implied by the next line; lets the status index bound it
            tasks.c.completed_at < before,
        )
        .limit(limit)
    )
    return conn.execute(tasks.delete().where(tasks.c.id.in_(doomed))).rowcount
