"""The use cases behind the HTTP API: submit a task, read its output."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.errors import TaskNotFound
from app.models import task as task_model
from app.models.task import TERMINAL

logger = logging.getLogger(__name__)


class TaskType(Protocol):
    name: str
    queue: str

    def validate(self, parameters: Any) -> dict[str, Any]: ...


class Registry(Protocol):
    def resolve(self, name: Any) -> TaskType: ...


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
        except Exception:
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

    def _forget(self, task_id: uuid.UUID) -> None:
        try:
            self.db.run(lambda c: task_model.delete_unstarted(c, task_id))
        except Exception:
            logger.exception("could not remove unpublished task %s", task_id)
