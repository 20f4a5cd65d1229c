"""Quotas per owner: how many unfinished tasks and schedules one owner may have.

The unfinished-tasks quota is checked on every submit without a COUNT(*) per submit: each API
process reads an owner's count at most once per `refresh_seconds` and counts its own admissions
in between. Tasks that finish meanwhile are seen at the next read, so the count only errs high
between reads; several processes admitting at once may pass the limit by what they admit within
one refresh interval (at most processes x submit rate x refresh_seconds).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from app.core.errors import TaskerError
from app.models import task as task_model


class QuotaExceeded(TaskerError):
    status = 429
    code = "quota_exceeded"

    def __init__(self, quota: str, limit: int, message: str):
        super().__init__(message, {"quota": quota, "limit": limit})


class UnfinishedTasks:
    """At most `limit` SCHEDULED, PENDING, STARTED or RETRYING tasks per owner (0: no limit)."""

    def __init__(self, db: Any, limit: int, refresh_seconds: float = 1.0):
        self.db = db
        self.limit = limit
        self.refresh_seconds = refresh_seconds
        self._counts: dict[str, tuple[float, int]] = {}  # owner -> (read at, count)
        self._lock = threading.Lock()

    def admit(self, owner: str) -> None:
        """Count one more unfinished task for `owner`, or raise QuotaExceeded."""
        if not self.limit:
            return
        now = time.monotonic()
        with self._lock:
            entry = self._counts.get(owner)
        if entry is None or now - entry[0] >= self.refresh_seconds:
            entry = (now, self.db.run(lambda c: task_model.count_unfinished(c, owner)))
        with self._lock:
            read_at, count = max(entry, self._counts.get(owner, entry))  # the newer read wins
            if count >= self.limit:
                self._counts[owner] = (read_at, count)
                raise QuotaExceeded(
                    "unfinished_tasks",
                    self.limit,
                    f"Quota exceeded: at most {self.limit} unfinished tasks (SCHEDULED, PENDING, "
                    "STARTED or RETRYING) per owner; wait for some to finish.",
                )
            self._counts[owner] = (read_at, count + 1)

    def release(self, owner: str) -> None:
        """A task admitted but not made after all (its insert or publish failed)."""
        with self._lock:
            entry = self._counts.get(owner)
            if entry is not None:
                self._counts[owner] = (entry[0], max(0, entry[1] - 1))
