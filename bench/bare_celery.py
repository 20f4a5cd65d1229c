"""The limit bench/e2e.py compares Tasker with: a bare Celery app, the same worker settings
(prefork, acks late, prefetch 1, JSON, no result backend), a task that adds two numbers and
counts itself done in Redis."""

import os

import redis
from celery import Celery

app = Celery("bare", broker=os.environ.get("BARE_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    task_default_queue="default",
    worker_hijack_root_logger=False,
)
_counter: redis.Redis | None = None


@app.task(name="bare.sum")
def add(a: int, b: int) -> int:
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["BARE_COUNTER_URL"])
    _counter.incr("bare:done")
    return a + b
