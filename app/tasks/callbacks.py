"""Claim, success, failure, retry and progress handlers: each step of a task's life, written to its row."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import StatementError

from app.core import metrics
from app.core.cache_manager import CacheManager
from app.core.changes import TASK_STREAMS, Watch
from app.core.database_manager import DatabaseManager
from app.core.resources import task_output
from app.core.webhooks import Deliveries
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models.task import TaskStatus

logger = logging.getLogger(__name__)


class TaskCallbacks:
    """Writes each step to the row; an outcome also to the cache, and announces it to waiting readers."""

    def __init__(
        self,
        db: DatabaseManager,
        cache: CacheManager,
        watch: Watch,
        redact: Callable[[str], str] = str,
        deliveries: Deliveries | None = None,
    ):
        self.redact = redact  # errors are stored with every configured secret masked
        self.db = db
        self.cache = cache
        self.watch = watch
        self.deliveries = deliveries

    def claim(self, task_id: uuid.UUID, worker: str | None = None) -> Row | None:
        """STARTED by `worker` and attempts + 1: the row's attempts, name, queue and times; None
        unless the row is PENDING or RETRYING."""
        claimed = self.db.run_statement(lambda c: task_model.claim_row(c, task_id, worker))
        if claimed is not None:
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)
        return claimed

    # `webhook`: whether the task has a webhook (its claim said), None when not known. Without
    # one an outcome is one statement; with one (or not known) the outcome and its delivery are
    # written in one transaction.

    def record_success(self, task_id: uuid.UUID, result: Any, webhook: bool | None = None) -> None:
        try:
            self._finish(task_id, TaskStatus.COMPLETED, result, None, webhook)
        except StatementError as exc:  # e.g. a value the database cannot hold
            logger.error("task %s: result could not be stored: %s", task_id, exc.orig)
            self._finish(task_id, TaskStatus.FAILED, None, "The task's result could not be stored.", webhook)

    def claim_within(
        self, task_id: uuid.UUID, max_attempts: int | Callable[[Row], int], worker: str | None = None
    ) -> Row | None:
        """Claim the row (its attempts, name, queue and times); past `max_attempts` starts (a number,
        or one computed from the claimed row), mark it FAILED instead of running it again. None when
        it is not to run."""
        claimed = self.claim(task_id, worker)
        if claimed is None:
            return None
        limit = max_attempts(claimed) if callable(max_attempts) else max_attempts
        if claimed.attempts > limit:
            self.record_failure(
                task_id,
                f"The task was started {claimed.attempts - 1} times without finishing "
                "(its worker stopped each time); giving up.",
                claimed.has_webhook,
            )
            return None
        return claimed

    def record_failure(self, task_id: uuid.UUID, error: str, webhook: bool | None = None) -> None:
        self._finish(task_id, TaskStatus.FAILED, None, self.redact(error.replace("\x00", "")), webhook)

    def record_cancelled(self, task_id: uuid.UUID, reason: str, webhook: bool | None = None) -> None:
        self._finish(task_id, TaskStatus.CANCELLED, None, reason, webhook)

    def report_progress(self, task_id: uuid.UUID, percent: int, message: str | None) -> None:
        if self.db.run_statement(lambda c: task_model.report_progress(c, task_id, percent, message)):
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)

    def status_of(self, task_id: uuid.UUID) -> str | None:
        """The row's status, or None when there is no row (a message not sent through submit)."""
        return self.db.run_statement(lambda c: task_model.statuses(c, [task_id])).get(task_id)

    def cancel_requested(self, task_id: uuid.UUID) -> bool:
        return self.db.run_statement(lambda c: task_model.cancel_requested(c, task_id))

    def record_retry(self, task_id: uuid.UUID, error: str) -> bool:
        clean = self.redact(error.replace("\x00", ""))
        marked = self.db.run_statement(lambda c: task_model.mark_retrying(c, task_id, clean))
        if marked:
            self.watch.announce(task_id, TaskStatus.RETRYING, TASK_STREAMS)
        return marked

    def _finish(
        self, task_id: uuid.UUID, status: TaskStatus, result: Any, error: str | None, webhook: bool | None
    ) -> None:
        delivery = None
        if webhook is False or self.deliveries is None:
            written = self.db.run_statement(lambda c: task_model.finish(c, task_id, status, result, error))
        else:

            def finish(conn: Any) -> tuple[Row | None, uuid.UUID | None]:
                row = task_model.finish(conn, task_id, status, result, error)
                if row is None:
                    return None, None
                return row, webhook_model.record(conn, task_id, row.owner, row.webhook, status)

            written, delivery = self.db.run(finish)
        if written is not None:
            metrics.TASKS_FINISHED.labels(written.name, status.value).inc()  # once: only this write counts
            output = task_output(status, result, error, written.progress, written.progress_message)
            # The outcome is cached and announced to waiting readers in one round trip.
            announcement = self.watch.announcement(task_id, status)
            self.cache.set_output(task_id, written.owner, output, publish=announcement)
            if delivery is not None and self.deliveries is not None:
                self.deliveries.publish(delivery)
        else:
            logger.info("task %s already has an outcome; %s not recorded", task_id, status)
