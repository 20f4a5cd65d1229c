"""Retention: finished tasks older than TASK_RETENTION_DAYS are deleted, a small batch at a time."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from app.models import task as task_model

logger = logging.getLogger(__name__)


class Retention:
    """Deletes COMPLETED, FAILED and CANCELLED rows finished more than `days` ago (0: keep all).

    Each batch of `batch` rows is its own short transaction, so no lock is held for long and
    submits and workers go on meanwhile; one run stops after `max_batches` and the next goes on.
    """

    def __init__(self, db: Any, days: int, batch: int = 500, max_batches: int = 200):
        self.db = db
        self.days = days
        self.batch = batch
        self.max_batches = max_batches

    def run(self) -> int:
        if not self.days:
            return 0
        before = self.db.run(task_model.database_now) - timedelta(days=self.days)
        deleted = 0
        for _ in range(self.max_batches):
            gone = self.db.run(lambda c: task_model.delete_finished_before(c, before, self.batch))
            deleted += gone
            if gone < self.batch:
                break
        if deleted:
            logger.info("retention: deleted %d tasks finished before %s", deleted, before.isoformat())
        return deleted
