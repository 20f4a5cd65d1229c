"""Named rate limits (app/core/rate_limits.py): a row per limit, and the tasks waiting their turn.

A limit is a GCRA (the generic cell rate algorithm): one token every `interval_seconds`, up to
`burst` at once. Its row keeps the theoretical arrival time `tat` (seconds since the epoch, by the
database's clock); a task takes the next token with one conditional UPDATE, which moves `tat` on by
one interval and tells the time the token is for: `max(now, tat - burst * interval)`. Tokens are
reserved, never refused, so a task never asks twice: it runs at once, or waits until its time.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import MESSAGE_COLUMNS, TaskStatus, metadata, tasks, touched, utcnow
from app.models.types import UTCDateTime

rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("rate", sa.String(50), nullable=False),  # as given: "10/second", "60/minute"
    sa.Column("interval_seconds", sa.Float(), nullable=False),  # between two tokens
    sa.Column("burst", sa.Integer(), nullable=False),  # tokens that may be taken at once
    sa.Column("tat", sa.Float()),  # the theoretical arrival time; null: never used
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
)

_CLAIMABLE = [TaskStatus.PENDING.value, TaskStatus.RETRYING.value]
_paced = sa.and_(tasks.c.rate_limit.is_not(None), tasks.c.status == TaskStatus.WAITING)


def put(conn: Connection, name: str, rate: str, interval: float, burst: int) -> Row:
    """The limit set (a changed rate applies from the next token on)."""
    values = {"rate": rate, "interval_seconds": interval, "burst": burst, "updated_at": utcnow()}
    if conn.execute(rate_limits.update().where(rate_limits.c.name == name).values(**values)).rowcount == 0:
        conn.execute(rate_limits.insert().values(name=name, **values))
    row = conn.execute(sa.select(rate_limits).where(rate_limits.c.name == name)).first()
    assert row is not None
    return row


def delete(conn: Connection, name: str) -> bool:
    return conn.execute(rate_limits.delete().where(rate_limits.c.name == name)).rowcount == 1


def every(conn: Connection) -> list[Row]:
    return list(conn.execute(sa.select(rate_limits).order_by(rate_limits.c.name)))


def reserve(conn: Connection, name: str, now: float) -> float | None:
    """The next token of `name` taken: the time (seconds since the epoch) it is for; None when no
    such limit is set. `now` is the database's clock."""
    moved = sa.case((rate_limits.c.tat > now, rate_limits.c.tat), else_=now) + rate_limits.c.interval_seconds
    query = (
        rate_limits.update()
        .where(rate_limits.c.name == name)
        .values(tat=moved)
        .returning(rate_limits.c.tat, rate_limits.c.interval_seconds, rate_limits.c.burst)
    )
    row = conn.execute(query).first()
    if row is None:
        return None
    return max(now, row.tat - row.burst * row.interval_seconds)


def graces(conn: Connection, names: list[str] | tuple[str, ...]) -> list[float]:
    """Per limit of `names` that is set, how late a held token may be spent: burst * interval."""
    query = sa.select(rate_limits.c.burst * rate_limits.c.interval_seconds).where(
        rate_limits.c.name.in_(names)
    )
    return [float(value) for value in conn.scalars(query)]


def turn_of(conn: Connection, task_id: uuid.UUID) -> Row | None:
    """A task about to be claimed: its status and the time its token is for (null: none held)."""
    query = sa.select(tasks.c.status, tasks.c.rate_until, tasks.c.concurrency_key).where(
        tasks.c.id == task_id
    )
    return conn.execute(query).first()


def wait(conn: Connection, task_id: uuid.UUID, name: str, until: datetime) -> bool:
    """A PENDING or RETRYING task WAITING for its token's time, with no message (its concurrency
    slot freed): whether it was."""
    query = (
        tasks.update()
        .where(
            tasks.c.id == task_id, tasks.c.status.in_([TaskStatus.PENDING.value, TaskStatus.RETRYING.value])
        )
        .values(
            status=TaskStatus.WAITING, rate_limit=name, rate_until=until, concurrency_slot=None, **touched()
        )
    )
    return conn.execute(query).rowcount == 1


def due(conn: Connection, now: datetime, before: datetime, limit: int = 500) -> list[Row]:
    """Tasks whose token's time has come, released: those without a key PENDING (to publish, not to
    start before their time, which may be up to `before`), those with one back to waiting for a
    slot once their time has come (their keys to admit). Their token stays held."""
    keyed = tasks.c.concurrency_key.is_not(None)
    mine = sa.and_(_paced, tasks.c.rate_until <= sa.case((keyed, now), else_=before))
    ids = sa.select(tasks.c.id).where(mine).order_by(tasks.c.rate_until).limit(limit).scalar_subquery()
    status = sa.case((keyed, TaskStatus.WAITING.value), else_=TaskStatus.PENDING.value)
    query = (
        tasks.update()
        .where(tasks.c.id.in_(ids), mine)
        .values(status=status, rate_limit=None, **touched())
        .returning(*MESSAGE_COLUMNS, tasks.c.concurrency_key, tasks.c.rate_until)
    )
    return sorted(conn.execute(query), key=lambda row: row.rate_until)


def waiting_counts(conn: Connection, owner: str | None = None) -> dict[str, int]:
    """Per limit, the tasks waiting their turn (of `owner`, if given)."""
    query = sa.select(tasks.c.rate_limit, sa.func.count()).where(_paced).group_by(tasks.c.rate_limit)
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return {name: count for name, count in conn.execute(query)}
