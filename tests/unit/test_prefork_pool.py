"""The embedded worker's prefork pool (app/core/broker/prefork.py): selected by a setting, running
tasks and their time limits as billiard's does, and a canary on the billiard methods it copies."""

from __future__ import annotations

import hashlib
import inspect
import time

import pytest
from billiard import pool as billiard_pool
from billiard.exceptions import TimeLimitExceeded
from celery import Celery, Task
from celery.concurrency import get_implementation
from celery.concurrency import prefork as celery_prefork

from app.core.broker import prefork
from app.core.celery_app import create_celery
from config import load_config

# billiard 4.3.2's sources of the two methods prefork.py copies with shorter waits.
COPIED = {
    "Worker._do_exit": (billiard_pool.Worker._do_exit, "4dcc35c9d032e551"),
    "TimeoutHandler.body": (billiard_pool.TimeoutHandler.body, "3e651989d2cafaae"),
}


@pytest.mark.parametrize("name", COPIED)
def test_billiards_originals_are_the_ones_copied(name):
    method, digest = COPIED[name]
    found = hashlib.sha256(inspect.getsource(method).encode()).hexdigest()[:16]
    assert found == digest, (
        f"billiard's {name} changed: compare it with the copy in app/core/broker/prefork.py, keep "
        f"or drop the copy, then record {found} here"
    )


def test_the_embedded_stack_selects_it_and_the_others_keep_celerys(tmp_path):
    config = load_config("testing", {"TASKER_DATA_DIR": str(tmp_path)})
    celery = create_celery("t", config, ["default"], Celery, Task)
    chosen = get_implementation(celery.conf.worker_pool)
    assert issubclass(chosen, celery_prefork.TaskPool) and chosen.BlockingPool.Worker is prefork._Worker
    redis = load_config("testing", {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert create_celery("r", redis, ["default"], Celery, Task).conf.worker_pool == "prefork"


def _double(value: int) -> int:
    return value * 2


def _linger(seconds: float) -> None:
    time.sleep(seconds)  # a task that runs past its time limit


def test_it_runs_work_enforces_time_limits_and_its_processes_exit_cleanly():
    pool = prefork._BlockingPool(processes=1, timeout=30, soft_timeout=None)
    try:
        assert pool.apply_async(_double, (21,)).get(timeout=30) == 42
        late = pool.apply_async(_linger, (30,), timeout=0.5)
        with pytest.raises(Exception, match=TimeLimitExceeded.__name__):  # billiard wraps it
            late.get(timeout=30)  # the timeout handler ended it, long before the 30 s
        assert pool.apply_async(_double, (1,)).get(timeout=30) == 2  # a new process took its place
    finally:
        pool.close()
        pool.join()
    assert [process.exitcode for process in pool._pool] == [0]
