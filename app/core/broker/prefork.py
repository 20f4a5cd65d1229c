"""Celery's prefork pool, stopping in a fraction of a second when idle: the embedded stack's worker.

On the filesystem broker Celery runs billiard's threaded pool (the transport has no event loop),
and billiard 4.3.2 spends three fixed seconds on a warm shutdown with nothing running: each pool
process sleeps 1 s after it says it is gone (`billiard.pool.Worker._do_exit`), and the timeout
handler thread checks every 1 s (`TimeoutHandler.body`), so joining it at exit waits as long.
Ctrl-C on `make run` waited for both. This pool is selected by the filesystem broker's
`worker_pool` setting (Celery's documented way to name a pool class), so no module is patched;
the two methods below are billiard's with the waits shortened. Time limits are checked five times
a second instead of once. tests/unit/test_prefork_pool.py fails when billiard's originals change,
so the copies are looked at again on every upgrade.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from billiard import pool as billiard_pool
from billiard.common import TERM_SIGNAL
from billiard.exceptions import CoroStop
from celery.concurrency import prefork

# After its last word (DEATH) a pool process lingers this long before it exits; billiard waits 1 s.
# A result it sent before is read anyway: Celery waits worker_lost_wait for it.
EXIT_GRACE_SECONDS = 0.1
# How often the timeout handler looks for tasks over their time limits; billiard: 1 s.
TIMEOUT_CHECK_SECONDS = 0.2


class _Worker(billiard_pool.Worker):
    def _do_exit(self, pid: int, exitcode: int | None, exc: BaseException | None = None) -> None:
        if exitcode is None:
            exitcode = billiard_pool.EX_FAILURE if exc else billiard_pool.EX_OK
        if self.on_exit is not None:
            self.on_exit(pid, exitcode)
        try:
            # on_death's TERM_SIGNAL arriving here would leave outq locked.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, {TERM_SIGNAL})
            try:
                self.outq.put((billiard_pool.DEATH, (pid, exitcode)))
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            time.sleep(EXIT_GRACE_SECONDS)
        finally:
            os._exit(exitcode)


class _TimeoutHandler(billiard_pool.TimeoutHandler):
    def body(self) -> None:
        while self._state == billiard_pool.RUN:
            try:
                for _ in self.handle_timeouts():
                    time.sleep(TIMEOUT_CHECK_SECONDS)
            except CoroStop:
                break


class _BlockingPool(billiard_pool.Pool):
    Worker = _Worker
    TimeoutHandler = _TimeoutHandler


class TaskPool(prefork.TaskPool):
    """Celery's prefork TaskPool; without an event loop it runs the pool above."""

    BlockingPool: Any = _BlockingPool
