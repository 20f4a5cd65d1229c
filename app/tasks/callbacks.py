"""Claim, success, failure, retry and progress handlers: each step of a task's life, written to its row."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import StatementError

from app.core.endings import Endings
from app.core.live.changes import TASK_STREAMS
from app.models import task as task_model
from app.models.task import TaskStatus

logger = logging.getLogger(__name__)


class TaskCallbacks:
    """Writes each step to the row; an outcome also to the cache, and announces it to waiting readers."""

    def __init__(self, endings: Endings, redact: Callable[[str], str] = str):
        self.redact = redact  # errors are stored with every configured secret masked
        self.endings = endings
        self.db = endings.db
        self.watch = endings.watch

    def claim(self, task_id: uuid.UUID, worker: str | None = None) -> Row | None:
        """STARTED by `worker` and attempts + 1: the row's attempts, name, queue and times; None
        unless the row is PENDING or RETRYING."""
        claimed = self.db.run_statement(lambda c: task_model.claim_row(c, task_id, worker))
        if claimed is not None:
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)
        return claimed

    # `webhook`: whether the task has a webhook (its claim said), None when not known
    # (Endings.finish).

    def record_success(self, task_id: uuid.UUID, result: Any, webhook: bool | None = None) -> None:
        try:
            self.endings.finish(task_id, TaskStatus.COMPLETED, result, None, webhook)
        except StatementError as exc:  # e.g. a value the database cannot hold
            logger.error("task %s: result could not be stored: %s", task_id, exc.orig)
            self.endings.finish(
                task_id, TaskStatus.FAILED, None, "The task's result could not be stored.", webhook
            )

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
                claimed.has_webhook or claimed.workflow_id is not None or claimed.concurrency_key is not None,
            )
            return None
        return claimed

    def record_failure(self, task_id: uuid.UUID, error: str, webhook: bool | None = None) -> None:
        self.endings.finish(task_id, TaskStatus.FAILED, None, self.redact(error.replace("\x00", "")), webhook)

    def record_cancelled(self, task_id: uuid.UUID, reason: str, webhook: bool | None = None) -> None:
        self.endings.finish(task_id, TaskStatus.CANCELLED, None, reason, webhook)

    def report_progress(self, task_id: uuid.UUID, percent: int, message: str | None) -> None:
        if self.db.run_statement(lambda c: task_model.report_progress(c, task_id, percent, message)):
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)

    def status_of(self, task_id: uuid.UUID) -> str | None:
        """The row's status, or None when there is no row (a message not sent through submit)."""
        return self.db.run_statement(lambda c: task_model.statuses(c, [task_id])).get(task_id)

    def cancel_requested(self, task_id: uuid.UUID) -> str | None:
        """Why the task was asked to stop ("": by its client), or None."""
        return self.db.run_statement(lambda c: task_model.cancel_requested(c, task_id))

    def record_retry(self, task_id: uuid.UUID, error: str) -> bool:
        clean = self.redact(error.replace("\x00", ""))
        marked = self.db.run_statement(lambda c: task_model.mark_retrying(c, task_id, clean))
        if marked:
            self.watch.announce(task_id, TaskStatus.RETRYING, TASK_STREAMS)
        return marked
