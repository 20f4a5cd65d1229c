"""Paused queues (app/core/pauses.py): a row in paused_queues per paused queue, and the tasks of
those queues held WAITING with tasks.paused_queue set.

A task is held at submit (its queue paused when it is written) or by the worker that takes its
message: the claim does not start a task whose queue is paused (app/models/task.py, _claimable),
and hold() moves it to WAITING, freeing the slot of its concurrency key if it held one. Resuming
deletes the queue's row and releases what it held, in one transaction.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import MESSAGE_COLUMNS, TaskStatus, paused_queues, tasks, touched, utcnow

_held = sa.and_(tasks.c.paused_queue.is_not(None), tasks.c.status == TaskStatus.WAITING)


def pause(conn: Connection, queue: str, by: str) -> Row:
    """The queue paused (again: as it was): when and by whom."""
    if get(conn, queue) is None:
        conn.execute(paused_queues.insert().values(queue=queue, paused_by=by, paused_at=utcnow()))
    row = get(conn, queue)
    assert row is not None
    return row


def get(conn: Connection, queue: str) -> Row | None:
    return conn.execute(sa.select(paused_queues).where(paused_queues.c.queue == queue)).first()


def paused(conn: Connection) -> dict[str, Row]:
    """Every paused queue, by name."""
    return {row.queue: row for row in conn.execute(sa.select(paused_queues))}


def hold(conn: Connection, task_id: uuid.UUID) -> Row | None:
    """A PENDING or RETRYING task of a paused queue held WAITING (its slot freed): its key, or None
    when the task is not one (its queue is not paused, or it moved on)."""
    query = (
        tasks.update()
        .where(
            tasks.c.id == task_id,
            tasks.c.status.in_([TaskStatus.PENDING.value, TaskStatus.RETRYING.value]),
            tasks.c.queue.in_(sa.select(paused_queues.c.queue)),
        )
        .values(status=TaskStatus.WAITING, paused_queue=tasks.c.queue, concurrency_slot=None, **touched())
        .returning(tasks.c.concurrency_key, tasks.c.queue)
    )
    return conn.execute(query).first()


def resume(conn: Connection, queue: str) -> tuple[bool, list[Row], list[str]]:
    """The queue's row deleted and its held tasks released: whether it was paused, the tasks
    without a key (now PENDING; to publish, highest priority first, then oldest) and the keys
    whose tasks wait again for a slot."""
    was_paused = conn.execute(paused_queues.delete().where(paused_queues.c.queue == queue)).rowcount > 0
    return was_paused, *release(conn, queue)


def release(conn: Connection, queue: str) -> tuple[list[Row], list[str]]:
    """What resume() releases (also the sweep's, for a task held as the queue was resumed)."""
    mine = sa.and_(_held, tasks.c.paused_queue == queue)
    keyed = conn.execute(
        tasks.update()
        .where(mine, tasks.c.concurrency_key.is_not(None))
        .values(paused_queue=None, **touched())
        .returning(tasks.c.concurrency_key)
    )
    keys = sorted({row.concurrency_key for row in keyed})
    plain = conn.execute(
        tasks.update()
        .where(mine)
        .values(status=TaskStatus.PENDING, paused_queue=None, **touched())
        .returning(*MESSAGE_COLUMNS, tasks.c.created_at)
    )
    rows = sorted(plain, key=lambda row: (-row.priority, row.created_at))
    return rows, keys


def stranded(conn: Connection) -> list[str]:
    """Queues with held tasks that are not paused (held as the queue was resumed): the sweep's."""
    query = (
        sa.select(tasks.c.paused_queue)
        .where(_held, tasks.c.paused_queue.not_in(sa.select(paused_queues.c.queue)))
        .group_by(tasks.c.paused_queue)
    )
    return list(conn.scalars(query))


def held_counts(conn: Connection, owner: str | None = None) -> dict[str, int]:
    """Per queue, its held tasks (of `owner`, if given)."""
    query = sa.select(tasks.c.paused_queue, sa.func.count()).where(_held).group_by(tasks.c.paused_queue)
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return dict(conn.execute(query).all())  # type: ignore[arg-type]
