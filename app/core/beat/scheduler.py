"""Beat's timekeeping: fire due schedules, then release due SCHEDULED tasks, under one lock.

Each fire time makes one task. Two guards keep it to one even when two beat processes run
by mistake: the whole pass holds one database lock, and the tasks table has a unique index
on (schedule_id, scheduled_for), so a second task for the same fire time cannot be written.
Fire times missed while no beat ran are made up with one run, not one per missed time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.core.broker import Broker, Message
from app.core.concurrency import Admissions
from app.core.cron import Cron, CronError
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, InvalidInput
from app.core.live.changes import LIST_STREAMS, TASK_STREAMS
from app.core.ports import Registry
from app.core.rate_limits import RateLimits
from app.core.webhooks import Deliveries
from app.models import schedule as schedule_model
from app.models import task as task_model
from app.models.task import TaskStatus

logger = logging.getLogger(__name__)

LOCK_NAME = "tasker-scheduler"


class Scheduler:
    def __init__(
        self,
        db: DatabaseManager,
        registry: Registry,
        broker: Broker,
        announce: Callable[..., None] = lambda task_id, status, needed_by=None: None,
        deliveries: Deliveries | None = None,
        admissions: Admissions | None = None,
    ):
        self.admissions = admissions  # a task with a concurrency key waits for a slot when due
        self.deliveries = deliveries  # webhook retries are released here too
        self.db = db
        self.registry = registry
        self.broker = broker
        self.announce = announce  # tells event streams of each task made or released
        self.rate_limits: RateLimits | None = None  # tasks waiting their turn under a rate limit

    def run_due(self, now: datetime | None = None) -> dict[str, int] | None:
        """One pass: tasks made by schedules, and SCHEDULED tasks published; None if another pass runs.

        `now` defaults to the database's clock; tests pass their own to move time.
        """
        with self.db.exclusive(LOCK_NAME) as held:
            if not held:
                return None
            now = now or self.db.run(task_model.database_now)
            fired = sum(self._fire(row, now) for row in self.db.run(lambda c: schedule_model.due(c, now)))
            released = sum(self._release(row) for row in self.db.run(lambda c: task_model.due(c, now)))
            counts = {"fired": fired, "released": released}
            if self.rate_limits is not None:  # tasks whose turn under a rate limit has come
                counts["paced"] = self.rate_limits.release_due()
            if self.deliveries is not None:
                # Always by the database's clock: a `now` passed to move time for schedules
                # must not send retries early.
                counts["webhook_retries"] = self.deliveries.release_due(self.db.run(task_model.database_now))
            return counts

    def _fire(self, row: Any, now: datetime) -> int:
        fire_time = row.next_run_at
        try:
            next_run = Cron.parse(row.cron, row.timezone).next_after(max(fire_time, now))
            task_type = self.registry.resolve(row.task, "task")
            clean = task_type.validate(row.parameters, "parameters")
            keyed = self._keyed(task_type, row.owner, clean)
        except (CronError, InvalidInput) as exc:  # the catalog changed since the schedule was made
            logger.error("schedule %s (%s) cannot fire: %s", row.id, row.name, exc)
            self.db.run(lambda c: schedule_model.update(c, row.id, enabled=False, next_run_at=None))
            return 0
        task_id = uuid.uuid4()

        def record(conn: Any) -> bool:
            if keyed and self.admissions is not None:
                self.admissions.lock(conn, keyed["concurrency_key"])
            if not schedule_model.advance(conn, row.id, row.next_run_at, next_run, task_id):
                return False  # changed or fired by someone else since we looked
            task_model.insert(
                conn,
                task_id,
                task_type.name,
                clean,
                task_type.queue,
                priority=row.priority,
                owner=row.owner,
                schedule_id=row.id,
                scheduled_for=fire_time,
                webhook=row.webhook,
                tags=row.tags,
                sealed=row.sealed,
                **keyed,
            )
            if keyed and self.admissions is not None:
                admitted.extend(self.admissions.admit(conn, keyed["concurrency_key"]))
            return True

        admitted: list[Message] = []
        try:
            if not self.db.run(record):
                return 0
        except sa.exc.IntegrityError:
            # This fire time already made its task: move the schedule on without another.
            self.db.run(lambda c: schedule_model.advance(c, row.id, row.next_run_at, next_run, None))
            return 0
        if keyed and self.admissions is not None:
            self.announce(task_id, TaskStatus.WAITING, LIST_STREAMS)
            self.admissions.publish(admitted)
            return 1
        try:
            self.broker.enqueue(Message(task_type, task_id, clean, row.priority, sealed=row.sealed))
        except BrokerUnavailable as exc:
            # The row stays PENDING; the recovery sweep publishes it once the broker is back.
            logger.warning("schedule %s made task %s but could not publish it: %s", row.id, task_id, exc)
        self.announce(task_id, TaskStatus.PENDING, LIST_STREAMS)
        return 1

    def _keyed(self, task_type: Any, owner: str, parameters: dict[str, Any]) -> dict[str, Any]:
        """The columns of a task its type's concurrency key makes wait for a slot (none: {})."""
        spec = task_type.concurrency
        if spec is None or self.admissions is None:
            return {}
        key = spec.key_of(task_type.name, owner, parameters, "parameters")
        return {"status": TaskStatus.WAITING, "concurrency_key": key, "concurrency_limit": spec.limit}

    def _release_keyed(self, row: Any, admissions: Admissions) -> int:
        """A due task with a concurrency key: WAITING for a slot, admitted now if one is free."""

        def wait(conn: Any) -> list[Message] | None:
            admissions.lock(conn, row.concurrency_key)  # before the row, as every writer of the key
            if not task_model.move(conn, row.id, TaskStatus.SCHEDULED, TaskStatus.WAITING):
                return None  # cancelled, or released by someone else, since we looked
            return admissions.admit(conn, row.concurrency_key)

        admitted = self.db.run(wait)
        if admitted is None:
            return 0
        self.announce(row.id, TaskStatus.WAITING, TASK_STREAMS)
        admissions.publish(admitted)
        return 1

    def _release(self, row: Any) -> int:
        if row.concurrency_key is not None and self.admissions is not None:
            return self._release_keyed(row, self.admissions)
        if not self.db.run(lambda c: task_model.move(c, row.id, TaskStatus.SCHEDULED, TaskStatus.PENDING)):
            return 0  # cancelled, or released by someone else, since we looked
        try:
            self.broker.enqueue(
                Message(
                    self.registry.resolve(row.name),
                    row.id,
                    row.parameters,
                    row.priority,
                    row.timeout_seconds,
                    sealed=row.sealed,
                )
            )
        except BrokerUnavailable:
            self.db.run(lambda c: task_model.move(c, row.id, TaskStatus.PENDING, TaskStatus.SCHEDULED))
            raise
        self.announce(row.id, TaskStatus.PENDING, TASK_STREAMS)
        return 1
