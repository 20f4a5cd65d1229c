"""Across processes: the worker's outcome write announces the change to a waiting API process."""

from __future__ import annotations

from app.core.broker import Message
from app.core.live.changes import ChangeFeed, Watch
from app.models.task import TERMINAL
from tests.support import insert_task, row_of


def test_a_worker_announces_the_outcome_to_a_waiting_process(app, db, worker):
    """Redis pub/sub on the real stack; datagrams between the host's processes on the embedded one."""
    reads: list[object] = []
    config = app.config
    feed = ChangeFeed.from_url(config["REDIS_URL"], config["DATA_DIR"])
    watch = Watch(feed, lambda ids: reads.append(ids) or {}, 60)
    tasks = app.extensions["tasker"].tasks
    task_id = insert_task(db)
    try:
        with watch.watching(task_id, TERMINAL) as finished:
            tasks.broker.enqueue(Message(tasks.registry.resolve("sum"), task_id, {"a": 1, "b": 2}))
            assert finished.wait(10), "no announcement within 10 s"
    finally:
        watch.close()
    assert row_of(db, task_id).status == "COMPLETED"
    assert reads == []  # woken by the announcement, not by the 60 s read-back
