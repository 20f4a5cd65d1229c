"""Claim, success, failure and retry handlers, bound to the managers by closure."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import requests
from celery import Task
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from sqlalchemy.exc import StatementError

from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.errors import DatabaseUnavailable
from app.core.task_manager import task_output
from app.models import task as task_model
from app.models.task import TaskStatus
from app.tasks.errors import TaskCancelled, TaskFailed
from app.tasks.registry import REGISTRY

logger = logging.getLogger(__name__)
CLAIM_RETRY_SECONDS = 5
PROGRESS_INTERVAL = 0.25  # seconds between two progress writes of one task


class TaskCallbacks:
    """Writes each step of a task's life to the row (and its outcome to the cache)."""

    def __init__(self, db: DatabaseManager, cache: CacheManager):
        self.db = db
        self.cache = cache

    def claim(self, task_id: uuid.UUID, worker: str | None = None) -> int | None:
        """STARTED by `worker` and attempts + 1; None unless the row is PENDING or RETRYING."""
        return self.db.run_statement(lambda c: task_model.claim(c, task_id, worker))

    def record_success(self, task_id: uuid.UUID, result: Any) -> None:
        try:
            self._finish(task_id, TaskStatus.COMPLETED, result, None)
        except StatementError as exc:  # e.g. a value the database cannot hold
            logger.error("task %s: result could not be stored: %s", task_id, exc.orig)
            self._finish(
                task_id,
                TaskStatus.FAILED,
                None,
                "The task's result could not be stored.",
            )

    def claim_within(self, task_id: uuid.UUID, max_attempts: int, worker: str | None = None) -> bool:
        """Claim the row; past `max_attempts` starts, mark it FAILED instead of running it again."""
        attempts = self.claim(task_id, worker)
        if attempts is None:
            return False
        if attempts > max_attempts:
            self.record_failure(
                task_id,
                f"The task was started {attempts - 1} times without finishing "
                "(its worker stopped each time); giving up.",
            )
            return False
        return True

    def record_failure(self, task_id: uuid.UUID, error: str) -> None:
        self._finish(task_id, TaskStatus.FAILED, None, error.replace("\x00", ""))

    def record_cancelled(self, task_id: uuid.UUID, reason: str) -> None:
        self._finish(task_id, TaskStatus.CANCELLED, None, reason)

    def report_progress(self, task_id: uuid.UUID, percent: int, message: str | None) -> None:
        self.db.run_statement(lambda c: task_model.report_progress(c, task_id, percent, message))

    def cancel_requested(self, task_id: uuid.UUID) -> bool:
        return self.db.run_statement(lambda c: task_model.cancel_requested(c, task_id))

    def record_retry(self, task_id: uuid.UUID, error: str) -> None:
        self.db.run_statement(lambda c: task_model.mark_retrying(c, task_id, error.replace("\x00", "")))

    def _finish(self, task_id: uuid.UUID, status: TaskStatus, result: Any, error: str | None) -> None:
        written = self.db.run_statement(lambda c: task_model.finish(c, task_id, status, result, error))
        if written is not None:
            output = task_output(status, result, error, written.progress, written.progress_message)
            self.cache.set_output(task_id, output)
        else:
            logger.info("task %s already has an outcome; %s not recorded", task_id, status)


def describe_failure(exc: BaseException, soft_time_limit: float | None = None) -> str:
    """The error a client sees: our own messages as they are, others with their type, no traceback."""
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = f" of {soft_time_limit:g} s" if soft_time_limit else ""
        return f"The task exceeded its time limit{limit} and was stopped."
    if isinstance(exc, TaskFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def make_task_class(callbacks: TaskCallbacks, settings: Mapping[str, Any]) -> type[Task]:
    """The base class of every Tasker task for one app: claim first, then record the outcome."""

    class TaskerTask(Task):
        throws = (TaskFailed, TaskCancelled)  # expected endings: logged without a traceback
        tracked = True  # False for housekeeping tasks that have no row
        task_manager: Any = None  # set by the app factory; beat's tasks use them
        schedule_manager: Any = None

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if self.request.called_directly or not self.tracked:
                return self.run(*args, **kwargs)
            task_id = _task_uuid(self.request.id)
            try:
                claimed = task_id is not None and callbacks.claim_within(
                    task_id, self.max_attempts, self.request.hostname
                )
            except DatabaseUnavailable as exc:
                logger.warning("task %s: database unavailable at claim; retrying", self.request.id)
                raise self.retry(exc=exc, countdown=CLAIM_RETRY_SECONDS, max_retries=None) from None
            if not claimed:
                logger.info(
                    "task %s is running elsewhere, finished, cancelled or unknown; not running it",
                    self.request.id,
                )
                raise Ignore()
            self._progress_at, self._unsaved_progress = 0.0, None
            try:
                return self.run(*args, **kwargs)
            finally:
                self._save_progress()  # where it stopped, whatever the throttle held back

        @property
        def max_attempts(self) -> int:
            """Starts allowed: the transient-error retries plus TASK_MAX_DELIVERIES for crashes."""
            task_type = REGISTRY.for_celery_task(self.name)
            deliveries = settings["TASK_MAX_DELIVERIES"]
            return task_type.max_starts(deliveries) if task_type else deliveries

        def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
            if self.tracked:
                _record(callbacks.record_success, task_id, retval)

        def report_progress(self, percent: int, message: str | None = None) -> None:
            """Record progress (0-100): at most every PROGRESS_INTERVAL seconds, and where the task ends."""
            self._unsaved_progress = (max(0, min(100, percent)), (message or "")[:200] or None)
            if percent >= 100 or time.monotonic() - getattr(self, "_progress_at", 0.0) >= PROGRESS_INTERVAL:
                self._save_progress()

        def _save_progress(self) -> None:
            unsaved, self._unsaved_progress = getattr(self, "_unsaved_progress", None), None
            task_id = _task_uuid(self.request.id)
            if unsaved is not None and task_id is not None:
                self._progress_at = time.monotonic()
                callbacks.report_progress(task_id, *unsaved)

        def check_cancelled(self) -> None:
            """Call between steps: raises TaskCancelled once the task's cancellation was requested."""
            task_id = _task_uuid(self.request.id)
            if task_id is not None and callbacks.cancel_requested(task_id):
                raise TaskCancelled("Cancelled while running, at the client's request.")

        def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            if not self.tracked or isinstance(exc, DatabaseUnavailable):
                return  # the claim could not run; the message is retried, nothing to record
            if isinstance(exc, TaskCancelled):
                _record(callbacks.record_cancelled, task_id, str(exc))
                return
            soft_limit = self.request.timelimit[1] if self.request.timelimit else None
            _record(callbacks.record_failure, task_id, describe_failure(exc, soft_limit))

        def mark_retrying(self, exc: BaseException) -> None:
            """RETRYING with the reason; called before the retry message is sent."""
            task_id = _task_uuid(self.request.id)
            if task_id is None or not self.tracked:
                return
            try:
                callbacks.record_retry(task_id, describe_failure(exc))
            except DatabaseUnavailable as db_exc:
                logger.warning("task %s: could not record the retry: %s", task_id, db_exc.details)

        @property
        def settings(self) -> Mapping[str, Any]:
            return settings

        @property
        def http(self) -> requests.Session:
            """One HTTP session (and connection pool) per worker process."""
            if getattr(self, "_http_pid", None) != os.getpid():
                self._http = requests.Session()
                self._http_pid = os.getpid()
            return self._http

    return TaskerTask


def _record(handler: Any, task_id: str, value: Any) -> None:
    try:
        handler(_task_uuid(task_id), value)
    except DatabaseUnavailable as exc:
        # The outcome is not written: run the task again once the database is back.
        logger.warning("task %s: database unavailable, requeueing: %s", task_id, exc.details)
        raise Reject(exc, requeue=True) from None


def _task_uuid(task_id: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        return None
