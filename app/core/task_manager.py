"""The use cases behind the HTTP API: submit, read, wait for, list, cancel and retry tasks."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.core import metrics
from app.core.batching import Batcher, Item
from app.core.cache_manager import CacheManager
from app.core.celery_app import message_headers
from app.core.changes import LIST_STREAMS, TASK_STREAMS, Watch
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, Conflict, DatabaseUnavailable, InvalidInput, TaskNotFound
from app.core.ports import DEFAULT_PRIORITY, MAX_SCHEDULE_DAYS, Publisher, Registry, TaskType
from app.core.quotas import QuotaExceeded, UnfinishedTasks
from app.core.resources import decode_cursor, encode_cursor, task_output, task_resource
from app.core.usage import UsagePolicy
from app.core.webhooks import Deliveries
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models.task import DEFAULT_OWNER, TERMINAL, TaskStatus

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
    """Every method takes the caller's `owner`: a task of another owner is not found, exactly like an
    unknown id. `owner=None` (an admin) reaches every task."""

    def __init__(
        self,
        db: DatabaseManager,
        cache: CacheManager,
        registry: Registry,
        publisher: Publisher,
        watch: Watch,
        quota: UnfinishedTasks | None = None,
        policy: UsagePolicy | None = None,
        deliveries: Deliveries | None = None,
        max_retry_attempts: int = 3,
        batch_max: int = 1,
    ):
        self.max_retry_attempts = max_retry_attempts  # a retry_policy's max_retries when it names none
        # Group commit of plain submits (SUBMIT_BATCH_MAX rows at most); 1: each on its own.
        self.batcher = Batcher(self._write_batch, batch_max) if batch_max > 1 else None
        self.db = db
        self.cache = cache
        self.registry = registry
        self.publisher = publisher
        self.watch = watch
        self.quota = quota or UnfinishedTasks(db, 0)
        self.policy = policy
        self.deliveries = deliveries

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
        owner: str = DEFAULT_OWNER,
        webhook: dict[str, Any] | None = None,
        retry_policy: dict[str, Any] | None = None,
    ) -> Submission:
        """Validate, persist as PENDING, then publish with the row's id.

        With `run_at` or `countdown` the row is SCHEDULED instead, and the Scheduler publishes it
        when its time comes. With `webhook` ({"url", "events"}), its ending is delivered there.
        `retry_policy` ({"max_retries", "on"}) replaces its task type's.
        """
        task_type = self.registry.resolve(name, fields.name)
        clean = task_type.validate(parameters, fields.parameters)
        if self.policy is not None:
            self.policy.check(task_type.name, clean, fields.parameters)
        task_id = uuid.uuid4()
        extra: dict[str, Any] = {"retry_of": retry_of, "priority": priority, "owner": owner}
        if webhook is not None:
            if self.deliveries is None:
                raise InvalidInput("webhook is not available here.", {"webhook": ["Not available."]})
            extra["webhook"] = webhook = self.deliveries.check(webhook)
        if retry_policy is not None:
            retry_policy = {"max_retries": self.max_retry_attempts, "on": "any"} | retry_policy
            extra["retry_policy"] = retry_policy
        due_at = self._due_at(run_at, countdown)
        if due_at is not None:
            extra |= {"status": TaskStatus.SCHEDULED, "run_at": due_at}
        if idempotency_key is not None:
            shape = {"priority": priority, "run_at": run_at, "countdown": countdown, "webhook": webhook}
            if retry_policy is not None:  # absent from the hash when not given: earlier keys still match
                shape["retry_policy"] = retry_policy
            extra |= {
                "idempotency_key": idempotency_key,
                "request_hash": _request_hash(task_type.name, clean, shape),
            }
            earlier = self._insert_once(task_id, task_type, clean, extra)
            if earlier is not None:
                return earlier
        else:
            self.quota.admit(owner)
            if self.batcher is not None and due_at is None:
                return self._submit_batched(self.batcher, task_id, task_type, clean, extra)
            self.db.run_statement(
                lambda c: task_model.insert(c, task_id, task_type.name, clean, task_type.queue, **extra)
            )
        if due_at is not None:
            metrics.TASKS_SUBMITTED.labels(task_type.name).inc()
            self.watch.announce(task_id, TaskStatus.SCHEDULED, LIST_STREAMS)
            return Submission(task_id, True)
        try:
            self.publisher.publish(task_type, task_id, clean, priority)
        except BrokerUnavailable:
            # Not queued: take the row back so nothing looks queued that never will run.
            self._forget(task_id)
            self.quota.release(owner)
            raise
        metrics.TASKS_SUBMITTED.labels(task_type.name).inc()
        self.watch.announce(task_id, TaskStatus.PENDING, LIST_STREAMS)
        logger.debug("task %s (%s) submitted", task_id, task_type.name)
        return Submission(task_id, True)

    def _submit_batched(
        self,
        batcher: Batcher,
        task_id: uuid.UUID,
        task_type: TaskType,
        clean: dict[str, Any],
        extra: dict[str, Any],
    ) -> Submission:
        """Written and published with the submits that arrive with it (app/core/batching.py);
        answered once its own row is committed and its own message accepted. The request id for
        the message is this request's, taken here: another request's thread may publish it."""
        row = {"id": task_id, "name": task_type.name, "parameters": clean, "queue": task_type.queue} | extra
        try:
            batcher.submit((row, task_type, message_headers()))
        except BaseException:
            self.quota.release(extra["owner"])
            raise
        return Submission(task_id, True)

    def _write_batch(self, items: Sequence[Item]) -> None:
        """One multi-row INSERT, then one publish of every message; each item settled with its
        own outcome: a row the database refuses fails only its own request, and a message the
        broker does not accept removes its own row and fails its request with a 503."""
        rows = [item.value[0] for item in items]
        metrics.SUBMIT_BATCH_SIZE.observe(len(rows))
        try:
            self.db.run_statement(lambda c: task_model.insert_many(c, rows))
            written = list(items)
        except DatabaseUnavailable as exc:
            for item in items:
                item.settle(error=exc)
            return
        except sa.exc.DBAPIError:  # some row is refused: find which, one statement each
            written = []
            for item in items:
                try:
                    self.db.run_statement(lambda c, r=item.value[0]: task_model.insert_many(c, [r]))
                    written.append(item)
                except (DatabaseUnavailable, sa.exc.DBAPIError) as exc:
                    item.settle(error=exc)
        messages = [
            (task_type, row["id"], row["parameters"], row["priority"], headers)
            for row, task_type, headers in (item.value for item in written)
        ]
        outcomes = self.publisher.publish_many(messages) if messages else []
        refused = [item for item, outcome in zip(written, outcomes, strict=True) if outcome is not None]
        if refused:
            # Not queued: take the rows back so nothing looks queued that never will run.
            ids = [item.value[0]["id"] for item in refused]
            try:
                self.db.run_statement(lambda c: task_model.delete_unstarted(c, ids))
            except DatabaseUnavailable as exc:
                logger.warning("could not remove %d unpublished tasks: %s", len(ids), exc.details)
        for item, outcome in zip(written, outcomes, strict=True):
            if outcome is not None:
                item.settle(error=outcome)
                continue
            row, task_type, _ = item.value
            metrics.TASKS_SUBMITTED.labels(task_type.name).inc()
            self.watch.announce(row["id"], TaskStatus.PENDING, LIST_STREAMS)
            item.settle()

    def _insert_once(
        self, task_id: uuid.UUID, task_type: TaskType, clean: dict[str, Any], extra: dict[str, Any]
    ) -> Submission | None:
        """Insert under an Idempotency-Key; the unique index decides between concurrent duplicates."""
        key, owner = extra["idempotency_key"], extra["owner"]
        # Read the clock first, in its own transaction: one that reads and then writes can be
        # refused outright by SQLite when another writer got in between.
        expired = self.db.run(task_model.database_now) - timedelta(hours=IDEMPOTENCY_KEY_HOURS)

        def insert(conn: Any) -> None:
            task_model.release_idempotency_key(conn, owner, key, expired)
            task_model.insert(conn, task_id, task_type.name, clean, task_type.queue, **extra)

        try:
            self.quota.admit(owner)
        except QuotaExceeded:
            # A replay makes no new task, so the quota does not stop it from finding its first one.
            earlier = self.db.run(lambda c: task_model.by_idempotency_key(c, owner, key))
            if earlier is None or earlier.created_at < expired:
                raise
            return self._replay(earlier, key, extra["request_hash"])
        try:
            self.db.run(insert)
            return None
        except sa.exc.IntegrityError:
            self.quota.release(owner)
            earlier = self.db.run(lambda c: task_model.by_idempotency_key(c, owner, key))
        return self._replay(earlier, key, extra["request_hash"])

    def _replay(self, earlier: Any, key: str, request_hash: str) -> Submission:
        """The earlier submission under this key, if it was the same request."""
        if earlier is None:  # the earlier row was removed meanwhile (its publish failed)
            raise Conflict("That Idempotency-Key is in use by a request that failed; retry shortly.")
        if earlier.request_hash != request_hash:
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

    def get(
        self,
        task_id: uuid.UUID,
        wait_seconds: float = 0,
        owner: str | None = None,
        until: Callable[[threading.Event, float], object] | None = None,
    ) -> dict[str, Any]:
        """The task resource; with `wait_seconds`, as soon as it is terminal or when the wait ends.

        `until(event, seconds)` waits for the event (default: `event.wait(seconds)`); the API passes
        one that also stops when its client has gone.
        """
        if wait_seconds <= 0:
            return task_resource(self._row(task_id, owner))
        with self.watch.watching(task_id, TERMINAL) as finished:
            row = self._row(task_id, owner)
            if row.status in TERMINAL:
                return task_resource(row)
            if until is None:
                finished.wait(wait_seconds)
            else:
                until(finished, wait_seconds)
        return task_resource(self._row(task_id, owner))  # terminal now, or as it is when the wait ends

    def get_output(self, task_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        """Cache first; only terminal outputs are ever cached, so a hit is never stale.

        The cache is per owner, so a hit is also the caller's own; an admin (None) reads the row.
        """
        cached = self.cache.get_output(task_id, owner) if owner is not None else None
        if cached is not None:
            return cached
        row = self.db.run_statement(lambda c: task_model.get_output(c, task_id, owner))
        if row is None:
            raise TaskNotFound("Task not found", {"task_uuid": str(task_id)})
        output = task_output(row.status, row.result, row.error, row.progress, row.progress_message)
        if row.status in TERMINAL:
            self.cache.set_output(task_id, row.owner, output)
        return output

    def list(
        self, limit: int, cursor: str | None = None, owner: str | None = None, **filters: Any
    ) -> dict[str, Any]:
        """A page of tasks, newest first, and the cursor of the next page (None on the last)."""
        after = decode_cursor(cursor) if cursor else None
        rows = self.db.run(lambda c: task_model.list_page(c, limit + 1, after=after, owner=owner, **filters))
        next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return {"tasks": [task_resource(row) for row in rows[:limit]], "next_cursor": next_cursor}

    def cancel(self, task_id: uuid.UUID, owner: str | None = None) -> tuple[dict[str, Any], bool]:
        """Cancel a task; returns its resource and True if it is CANCELLED already (False: requested)."""
        cancelled = self.db.run(lambda c: self._cancel(c, task_id, owner))
        if cancelled is not None:
            self.watch.announce(task_id, TaskStatus.CANCELLED)
            if self.deliveries is not None:
                self.deliveries.publish(cancelled)
            self._revoke(task_id)
            row = self._row(task_id, owner)
            metrics.TASKS_FINISHED.labels(row.name, TaskStatus.CANCELLED.value).inc()
            return task_resource(row), True
        if self.db.run(lambda c: task_model.request_cancel(c, task_id, owner)):
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)
            self._revoke(task_id)
            return task_resource(self._row(task_id, owner)), False
        row = self._row(task_id, owner)
        raise Conflict(
            f"The task is {row.status}; only a SCHEDULED, PENDING, RETRYING or STARTED task "
            "can be cancelled.",
            {"status": row.status},
        )

    @staticmethod
    def _cancel(conn: Any, task_id: uuid.UUID, owner: str | None) -> uuid.UUID | bool | None:
        """CANCELLED, and its delivery written in the same transaction: the delivery's id (True
        without one), or None if the task could not be cancelled at once."""
        row = task_model.cancel(conn, task_id, owner)
        if row is None:
            return None
        return webhook_model.record(conn, task_id, row.owner, row.webhook, TaskStatus.CANCELLED) or True

    def retry(self, task_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        """A new task with the same name, parameters and owner as a FAILED or CANCELLED one."""
        row = self._row(task_id, owner)
        if row.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise Conflict(
                f"The task is {row.status}; only a FAILED or CANCELLED task can be retried.",
                {"status": row.status},
            )
        submission = self.submit(
            row.name,
            row.parameters,
            retry_of=row.id,
            priority=row.priority,
            owner=row.owner,
            webhook=row.webhook,
            retry_policy=row.retry_policy,
        )
        return task_resource(self._row(submission.id))

    def row(self, task_id: uuid.UUID, owner: str | None = None) -> Any:
        """The task's row as `owner` may see it (None: any owner); TaskNotFound otherwise."""
        return self._row(task_id, owner)

    def _row(self, task_id: uuid.UUID, owner: str | None = None) -> Any:
        row = self.db.run(lambda c: task_model.get(c, task_id, owner))
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


def _request_hash(name: str, parameters: dict[str, Any], shape: dict[str, Any]) -> str:
    """Everything that shapes the task: a replay with another priority or time is another request."""
    request = {"name": name, "parameters": parameters} | shape
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
