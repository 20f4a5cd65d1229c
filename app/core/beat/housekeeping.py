"""Housekeeping (due tasks and schedules, the recovery sweep), run inside the beat process.

These jobs used to be Celery tasks on the `default` queue, where two long tasks on a
two-process worker held a due task for as long as they ran. Beat runs them itself now, each
on a thread of its own, so no task on any worker can delay them. Each job holds a database
lock while it runs, so a second beat started by mistake does no harm.

After each completed pass the job's time and counts go to the `housekeeping` table (through
`report`), where /health/ready and /metrics read them: a beat that stopped shows as a job whose
last pass is older than three intervals.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.errors import DependencyUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    interval: float  # seconds from the end of one run to the start of the next
    run: Callable[[], Any]


Report = Callable[[Job, dict[str, int]], None]


class Housekeeping:
    def __init__(self, celery: Any, jobs: list[Job], report: Report | None = None):
        self.celery = celery  # the Celery app whose beat runs these jobs
        self.jobs = jobs
        self.report = report
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start one thread per job (once); they run until stop()."""
        if self._threads:
            return
        for job in self.jobs:
            thread = threading.Thread(target=self._loop, args=(job,), name=f"tasker-{job.name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "housekeeping started: %s", ", ".join(f"{j.name} every {j.interval:g} s" for j in self.jobs)
        )

    def on_beat_init(self, sender: Any = None, **kwargs: Any) -> None:
        """Celery's beat_init signal: start in the beat process of this app only."""
        if sender is not None and sender.app is self.celery:
            self.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()

    def _loop(self, job: Job) -> None:
        while True:
            try:
                outcome = job.run()
            except DependencyUnavailable as exc:
                logger.warning("%s skipped: %s", job.name, exc.message)
            except Exception:  # a bug in one pass must not end the thread: the next pass may work
                logger.exception("%s failed; it runs again in %g s", job.name, job.interval)
            else:
                logger.debug("%s: %s", job.name, outcome)
                self._report(job, outcome)
            if self._stop.wait(job.interval):
                return

    def _report(self, job: Job, outcome: Any) -> None:
        if self.report is None or outcome is None:  # None: another beat's pass held the lock
            return
        counts = outcome if isinstance(outcome, dict) else {"done": outcome}
        if counts.get("skipped"):
            return  # the recovery sweep's way of saying another beat's pass held the lock
        try:
            self.report(job, {k: v for k, v in counts.items() if k != "skipped"})
        except DependencyUnavailable as exc:
            logger.warning("%s: could not record the pass: %s", job.name, exc.message)
