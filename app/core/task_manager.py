"""The use cases behind the HTTP API: submit, read, wait for, list, cancel and retry tasks."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.core.cache_manager import CacheManager
from app.core.changes import Watch
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, Conflict, DatabaseUnavailable, InvalidInput, TaskNotFound
from app.core.ports import DEFAULT_PRIORITY, MAX_SCHEDULE_DAYS, Publisher, Registry, TaskType
from app.core.resources import decode_cursor, encode_cursor, task_output, task_resource
from app.models import task as task_model
from app.models.task import TERMINAL, TaskStatus

IDEMPOTENCY_KEY_HOURS = 24

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldNames:
    """What the calling API calls the task type and its parameters, for the errors it reports."""

    name: str = "name"
    parameters: str = "parameters"


@dataclass(frozen=True)
class Submission:
    id: uuid.UUID
    created: bool  # False when an Idempotency-Key matched an earlier submission


class TaskManager:
    def __init__(
        self, db: DatabaseManager, cache: CacheManager, registry: Registry, publisher: Publisher, watch: Watch
    ):
        self.db = db
        self.cache = cache
        self.registry = registry
        self.publisher = publisher
        self.watch = watch

    def submit(
        self,
        name: Any,
        parameters: Any,
        idempotency_key: str | None = None,
        retry_of: uuid.UUID | None = None,
        fields: FieldNames = FieldNames(),
        priority: int = DEFAULT_PRIORITY,
        run_at: datetime | None = None,
        countdown: float | None = None,
    ) -> Submission:
        """Validate, persist as PENDING, then publish with the row's id.

        With `run_at` or `countdown` the row is SCHEDULED instead, and the Scheduler publishes it
        when its time comes.
        """
        task_type = self.registry.resolve(name, fields.name)
        clean = task_type.validate(parameters, fields.parameters)
        task_id = uuid.uuid4()
        extra: dict[str, Any] = {"retry_of": retry_of, "priority": priority}
        due_at = self._due_at(run_at, countdown)
        if due_at is not None:
            extra |= {"status": TaskStatus.SCHEDULED, "run_at": due_at}
        if idempotency_key is not None:
            extra |= {
                "idempotency_key": idempotency_key,
                "request_hash": _request_hash(task_type.name, clean),
            }
            earlier = self._insert_once(task_id, task_type, clean, extra)
            if earlier is not None:
                return earlier
        else:
            self.db.run_statement(
                lambda c: task_model.insert(c, task_id, task_type.name, clean, task_type.queue, **extra)
            )
        if due_at is not None:
            return Submission(task_id, True)
        try:
            self.publisher.publish(task_type, task_id, clean, priority)
        except BrokerUnavailable:
            # Not queued: take the row back so nothing looks queued that never will run.
            self._forget(task_id)
            raise
        logger.debug("task %s (%s) submitted", task_id, task_type.name)
        return Submission(task_id, True)

    def _insert_once(
        self, task_id: uuid.UUID, task_type: TaskType, clean: dict[str, Any], extra: dict[str, Any]
    ) -> Submission | None:
        """Insert under an Idempotency-Key; the unique index decides between concurrent duplicates."""
        key = extra["idempotency_key"]
        # Read the clock first, in its own transaction: one that reads and then writes can be
        # refused outright by SQLite when another writer got in between.
        expired = self.db.run(task_model.database_now) - timedelta(hours=IDEMPOTENCY_KEY_HOURS)

        def insert(conn: Any) -> None:
            task_model.release_idempotency_key(conn, key, expired)
            task_model.insert(conn, task_id, task_type.name, clean, task_type.queue, **extra)

        try:
            self.db.run(insert)
            return None
        except sa.exc.IntegrityError:
            earlier = self.db.run(lambda c: task_model.by_idempotency_key(c, key))
        if earlier is None:  # the earlier row was removed meanwhile (its publish failed)
            raise Conflict("That Idempotency-Key is in use by a request that failed; retry shortly.")
        if earlier.request_hash != extra["request_hash"]:
            raise Conflict(
                "This Idempotency-Key was already used with a different request.",
                {"idempotency_key": key, "task_id": str(earlier.id)},
            )
        return Submission(earlier.id, False)

    def _due_at(self, run_at: datetime | None, countdown: float | None) -> datetime | None:
        """When a scheduled task is due, in UTC by the database's clock; None to run it now."""
        if run_at is None and not countdown:
            return None
        now = self.db.run(task_model.database_now)
        if countdown:
            return now + timedelta(seconds=countdown)
        assert run_at is not None
        if run_at <= now:
            raise InvalidInput("run_at is in the past.", {"run_at": ["Must be in the future."]})
        if run_at > now + timedelta(days=MAX_SCHEDULE_DAYS):
            message = f"Must be at most {MAX_SCHEDULE_DAYS} days ahead."
            raise InvalidInput(f"run_at is too far ahead: {message}", {"run_at": [message]})
        return run_at.astimezone(UTC)

    def get(self, task_id: uuid.UUID, wait_seconds: float = 0) -> dict[str, Any]:
        """The task resource; with `wait_seconds`, as soon as it is terminal or when the wait ends."""
        if wait_seconds <= 0:
            return task_resource(self._row(task_id))
        with self.watch.watching(task_id, TERMINAL) as finished:
            row = self._row(task_id)
            if row.status in TERMINAL:
                return task_resource(row)
            finished.wait(wait_seconds)
        return task_resource(self._row(task_id))  # terminal now, or as it is when the wait ends

    def get_output(self, task_id: uuid.UUID) -> dict[str, Any]:
        """Cache first; only terminal outputs are ever cached, so a hit is never stale."""
        cached = self.cache.get_output(task_id)
        if cached is not None:
            return cached
        row = self.db.run_statement(lambda c: task_model.get_output(c, task_id))
        if row is None:
            raise TaskNotFound("Task not found", {"task_uuid": str(task_id)})
        output = task_output(row.status, row.result, row.error, row.progress, row.progress_message)
        if row.status in TERMINAL:
            self.cache.set_output(task_id, output)
        return output

    def list(self, limit: int, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        """A page of tasks, newest first, and the cursor of the next page (None on the last)."""
        after = decode_cursor(cursor) if cursor else None
        rows = self.db.run(lambda c: task_model.list_page(c, limit + 1, after=after, **filters))
        next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return {"tasks": [task_resource(row) for row in rows[:limit]], "next_cursor": next_cursor}

    def cancel(self, task_id: uuid.UUID) -> tuple[dict[str, Any], bool]:
        """Cancel a task; returns its resource and True if it is CANCELLED already (False: requested)."""
        if self.db.run(lambda c: task_model.cancel(c, task_id)):
            self.watch.announce(task_id, TaskStatus.CANCELLED)
            self._revoke(task_id)
            return task_resource(self._row(task_id)), True
        if self.db.run(lambda c: task_model.request_cancel(c, task_id)):
            self._revoke(task_id)
            return task_resource(self._row(task_id)), False
        row = self._row(task_id)
        raise Conflict(
            f"The task is {row.status}; only a SCHEDULED, PENDING, RETRYING or STARTED task "
            "can be cancelled.",
            {"status": row.status},
        )

    def retry(self, task_id: uuid.UUID) -> dict[str, Any]:
        """A new task with the same name and parameters as a FAILED or CANCELLED one."""
        row = self._row(task_id)
        if row.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise Conflict(
                f"The task is {row.status}; only a FAILED or CANCELLED task can be retried.",
                {"status": row.status},
            )
        submission = self.submit(row.name, row.parameters, retry_of=row.id, priority=row.priority)
        return task_resource(self._row(submission.id))

    def _row(self, task_id: uuid.UUID) -> Any:
        row = self.db.run(lambda c: task_model.get(c, task_id))
        if row is None:
            raise TaskNotFound("Task not found", {"id": str(task_id)})
        return row

    def _revoke(self, task_id: uuid.UUID) -> None:
        # Best effort: the claim-time check is what really stops a cancelled task.
        try:
            self.publisher.revoke(task_id)
        except BrokerUnavailable as exc:
            logger.warning("could not send a revoke for %s: %s", task_id, exc.details)

    def _forget(self, task_id: uuid.UUID) -> None:
        try:
            self.db.run_statement(lambda c: task_model.delete_unstarted(c, task_id))
        except DatabaseUnavailable as exc:
            # The recovery sweep publishes the row later; the broker error is the one to report.
            logger.warning("could not remove unpublished task %s: %s", task_id, exc.details)


def _request_hash(name: str, parameters: dict[str, Any]) -> str:
    canonical = json.dumps({"name": name, "parameters": parameters}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
