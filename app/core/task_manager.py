"""The use cases behind the HTTP API: submit a task, read its output."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, Protocol

from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, DatabaseUnavailable, TaskNotFound
from app.models import task as task_model
from app.models.task import TERMINAL

logger = logging.getLogger(__name__)


class TaskType(Protocol):
    name: str
    queue: str
    time_limit: int

    def validate(self, parameters: Any) -> dict[str, Any]: ...


class Registry(Protocol):
    def resolve(self, name: Any) -> TaskType: ...

    def __iter__(self) -> Iterator[TaskType]: ...


class Publisher(Protocol):
    def publish(self, task_type: Any, task_id: uuid.UUID, parameters: dict[str, Any]) -> None: ...

    def ping(self) -> None: ...


def task_output(status: str, result: Any, error: str | None) -> dict[str, Any]:
    """The reference's `task_output` object."""
    return {"status": status, "result": result, "error": error}


class TaskManager:
    def __init__(
        self,
        db: DatabaseManager,
        cache: CacheManager,
        registry: Registry,
        publisher: Publisher,
    ):
        self.db = db
        self.cache = cache
        self.registry = registry
        self.publisher = publisher

    def submit(self, name: Any, parameters: Any) -> uuid.UUID:
        """Validate, persist as PENDING, then publish with the row's id."""
        task_type = self.registry.resolve(name)
        clean = task_type.validate(parameters)
        task_id = uuid.uuid4()
        self.db.run(lambda c: task_model.insert(c, task_id, task_type.name, clean, task_type.queue))
        try:
            self.publisher.publish(task_type, task_id, clean)
        except BrokerUnavailable:
            # Not queued: take the row back so nothing looks queued that never will run.
            self._forget(task_id)
            raise
        logger.debug("task %s (%s) submitted", task_id, task_type.name)
        return task_id

    def get_output(self, task_id: uuid.UUID) -> dict[str, Any]:
        """Cache first; only terminal outputs are ever cached, so a hit is never stale."""
        cached = self.cache.get_output(task_id)
        if cached is not None:
            return cached
        row = self.db.run(lambda c: task_model.get_output(c, task_id))
        if row is None:
            raise TaskNotFound("Task not found", {"task_uuid": str(task_id)})
        output = task_output(row.status, row.result, row.error)
        if row.status in TERMINAL:
            self.cache.set_output(task_id, output)
        return output

    def check_dependencies(self) -> dict[str, str]:
        """'ok' or the reason, for the database, the broker and the cache."""
        checks: dict[str, str] = {}
        for name, probe in (
            ("database", self.db.ping),
            ("broker", self.publisher.ping),
        ):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - any failure means not ready; the reason is reported
                checks[name] = getattr(exc, "details", {}).get("reason") or str(exc)
        checks["cache"] = "ok" if self.cache.ping() else "unavailable (reads fall back to the database)"
        return checks

    def recover(self, pending_after_seconds: float, grace_seconds: float = 30) -> dict[str, int]:
        """Publish again what a lost message or a dead worker left behind.

        PENDING rows untouched for `pending_after_seconds` are published again; STARTED
        rows whose attempt outlived the task type's hard time limit go back to PENDING
        and are published again. A duplicate message is harmless: the claim is a
        conditional UPDATE, and the attempt cap at claim time ends a task that keeps dying.
        """
        counts = {"republished": 0, "requeued": 0, "skipped": 0}
        with self.db.exclusive("tasker-recovery") as held:
            if not held:
                counts["skipped"] = 1  # another sweep is running
                return counts
            self._recover(pending_after_seconds, grace_seconds, counts)
        if counts["republished"] or counts["requeued"]:
            logger.warning(
                "recovery: %(republished)s PENDING republished, %(requeued)s STARTED requeued", counts
            )
        return counts

    def _recover(self, pending_after_seconds: float, grace_seconds: float, counts: dict[str, int]) -> None:
        now = self.db.run(task_model.database_now)
        before = now - timedelta(seconds=pending_after_seconds)
        for row in self.db.run(lambda c: task_model.pending_since(c, before)):
            if self._publish_again(row, "PENDING"):
                counts["republished"] += 1
        for task_type in self.registry:
            cutoff = now - timedelta(seconds=task_type.time_limit + grace_seconds)
            for row in self.db.run(lambda c, t=task_type, b=cutoff: task_model.started_before(c, t.name, b)):
                if self._publish_again(row, "STARTED", row.attempts):
                    counts["requeued"] += 1
        if any(counts.values()):
            logger.warning(
                "recovery sweep: %(republished)s PENDING republished, %(requeued)s STARTED requeued", counts
            )
        return counts

    def _publish_again(self, row: Any, status: str, attempts: int | None = None) -> bool:
        if not self.db.run(lambda c: task_model.requeue(c, row.id, status, attempts)):
            return False  # it moved on since we looked
        self.publisher.publish(self.registry.resolve(row.name), row.id, row.parameters)
        return True

    def _forget(self, task_id: uuid.UUID) -> None:
        try:
            self.db.run(lambda c: task_model.delete_unstarted(c, task_id))
        except DatabaseUnavailable as exc:
            # The recovery sweep publishes the row later; the broker error is the one to report.
            logger.warning("could not remove unpublished task %s: %s", task_id, exc.details)
