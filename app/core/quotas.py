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
    """At most `limit` SCHEDULED, PENDING, STARTED or RETRYING tasks per owner (0: no limit).

    The COUNT behind it costs milliseconds at thousands of rows, so a process does not run it per
    submit: it reads the count at most once per `refresh_seconds`, and between two reads admits
    at most an eighth of the room the last read left (at least one), then reads again. Far from
    the limit that is a read now and then; near it, a read per submit. Several API processes admit
    in parallel: with up to SHARE of them the owner can pass its quota by at most the submits in
    flight at that moment (between their read and their insert), as the race test measures.
    """

    SHARE = 8

    def __init__(self, db: Any, limit: int, refresh_seconds: float = 1.0):
        self.db = db
        self.limit = limit
        self.refresh_seconds = refresh_seconds
        self._counts: dict[str, tuple[float, int, int]] = {}  # owner -> (read at, count, admitted since)
        self._lock = threading.Lock()

    def admit(self, owner: str, count: int = 1) -> None:
        """Count `count` more unfinished tasks for `owner` (a workflow's steps), or raise
        QuotaExceeded."""
        if not self.limit:
            return
        asked = count
        now = time.monotonic()
        with self._lock:
            entry = self._counts.get(owner)
        if entry is None or now - entry[0] >= self.refresh_seconds or entry[2] >= self._share(entry[1]):
            count = self.db.run(lambda c: task_model.count_unfinished(c, owner))
            # This process's admissions the new count cannot show yet (not inserted): those the
            # count did not grow by. Others' inserts hide some of ours: the in-flight bound.
            unseen = 0 if entry is None else max(0, entry[2] - max(0, count - entry[1]))
            entry = (now, count, unseen)
        with self._lock:
            kept = self._counts.get(owner)
            read_at, count, admitted = (
                kept if kept is not None and kept[0] >= entry[0] else entry
            )  # newer wins
            if count + admitted + asked > self.limit:
                self._counts[owner] = (read_at, count, admitted)
                raise QuotaExceeded(
                    "unfinished_tasks",
                    self.limit,
                    f"Quota exceeded: at most {self.limit} unfinished tasks (SCHEDULED, PENDING, "
                    "STARTED, RETRYING or WAITING) per owner; wait for some to finish.",
                )
            self._counts[owner] = (read_at, count, admitted + asked)

    def _share(self, count: int) -> int:
        """Admissions a process may make on one read of `count`."""
        return max(1, (self.limit - count) // self.SHARE)

    def release(self, owner: str, count: int = 1) -> None:
        """Tasks admitted but not made after all (their insert or publish failed)."""
        with self._lock:
            entry = self._counts.get(owner)
            if entry is not None:
                self._counts[owner] = (entry[0], entry[1], max(0, entry[2] - count))
