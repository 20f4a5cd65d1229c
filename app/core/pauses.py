"""Paused queues: a queue paused for a deploy or an upstream's outage starts none of its tasks
until it is resumed; its submits are accepted and wait (WAITING, `waiting_for: {"queue_paused":
name}`), and the tasks already queued wait as the worker takes them. Running tasks finish.

The pause is a row (app/models/pauses.py), so it survives restarts and holds on every worker:
the claim starts no task of a paused queue, and the worker that took its message holds it
instead (freeing its concurrency slot for a task of another queue). A submit holds its task at
once when its process knows the queue paused (read at most PAUSE_CACHE_SECONDS ago); one that
does not yet is held by the claim. Resuming releases the held tasks in one transaction, highest
priority first, then oldest; one held by a process that had not yet seen the resume is released
by the recovery sweep.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from app.core.concurrency import Admissions
from app.core.database_manager import DatabaseManager
from app.core.errors import NotFound
from app.models import pauses as pause_model
from app.models import task as task_model

logger = logging.getLogger(__name__)

PAUSE_CACHE_SECONDS = 1.0


class Pauses:
    def __init__(self, db: DatabaseManager, admissions: Admissions, queues: list[str]):
        self.db = db
        self.admissions = admissions
        self.queues = queues  # the queues the task types use: the ones that can be paused
        self._paused: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def paused(self) -> frozenset[str]:
        """The paused queues, as read at most PAUSE_CACHE_SECONDS ago (what a submit goes by)."""
        if time.monotonic() - self._read_at >= PAUSE_CACHE_SECONDS:
            self._paused = frozenset(self.db.run(pause_model.paused))
            self._read_at = time.monotonic()
        return self._paused

    def check(self, queue: str) -> None:
        if queue not in self.queues:
            rule = f"No task type uses it; the queues are: {', '.join(self.queues)}."
            raise NotFound(f"There is no queue {queue!r}: {rule}", {"queue": [rule]})

    def pause(self, queue: str, by: str) -> dict[str, Any]:
        """The queue paused (already paused: as it was)."""
        self.check(queue)
        try:
            self.db.run(lambda c: pause_model.pause(c, queue, by))
        except sa.exc.IntegrityError:
            pass  # paused by a twin request meanwhile
        self._read_at = float("-inf")
        return self.state(queue)

    def resume(self, queue: str) -> dict[str, Any]:
        """The queue resumed and its held tasks released: {"queue", "paused": false, "released": n}."""
        self.check(queue)
        released = self._release(queue, lambda c: pause_model.resume(c, queue)[1:])
        self._read_at = float("-inf")
        return self.state(queue) | {"released": released}

    def hold(self, task_id: uuid.UUID) -> str | None:
        """A claimed-for task of a paused queue held WAITING (its slot's next task admitted): its
        queue, or None when it is not one."""

        def held(conn: Connection) -> tuple[str | None, list[Any]]:
            _, key = task_model.ending_facts(conn, task_id)
            if key is not None:  # the key's lock before the row, as every writer of a key's rows
                self.admissions.lock(conn, key)
            row = pause_model.hold(conn, task_id)
            if row is None:
                return None, []
            return row.queue, [] if key is None else self.admissions.admit(conn, key)

        queue, admitted = self.db.run(held)
        if queue is not None:
            self.admissions.set_aside(task_id, admitted)
        return queue

    def release_stranded(self) -> int:
        """The sweep's: tasks held in a queue that is not paused (held as it was resumed) released."""
        released = 0
        for queue in self.db.run(pause_model.stranded):
            released += self._release(queue, lambda c, q=queue: pause_model.release(c, q))
        return released

    def _release(self, queue: str, release: Any) -> int:
        def released(conn: Connection) -> list[Any]:
            rows, keys = release(conn)
            return [self.admissions.message(row) for row in rows] + self.admissions.admit_keys(conn, keys)

        messages = self.db.run(released)
        self.admissions.publish(messages)
        if messages:
            logger.info("queue %s: %d held tasks released", queue, len(messages))
        return len(messages)

    def state(self, queue: str) -> dict[str, Any]:
        """{"queue", "paused", "paused_at", "paused_by", "held"}: the tasks it holds."""

        def read(conn: Connection) -> tuple[Any, int]:
            return pause_model.get(conn, queue), pause_model.held_counts(conn).get(queue, 0)

        row, held = self.db.run(read)
        return {
            "queue": queue,
            "paused": row is not None,
            "paused_at": None if row is None else row.paused_at,
            "paused_by": None if row is None else row.paused_by,
            "held": held,
        }
