"""The lifecycle promises: persist before publish, one outcome per task, no rerun of finished work."""

from __future__ import annotations

import uuid

import redis
import sqlalchemy as sa

from app.core.celery_app import CeleryPublisher
from app.models.task import TaskStatus
from app.tasks.callbacks import TaskCallbacks
from tests.support import poll, wait_for_output


def row_of(db_engine, task_id):
    with db_engine.connect() as conn:
        query = sa.text("SELECT * FROM tasks WHERE id = :id")
        return conn.execute(query, {"id": str(task_id)}).mappings().one_or_none()


class CheckingPublisher(CeleryPublisher):
    """Publishes for real, but first looks for the row from another connection."""

    def __init__(self, celery, db_engine):
        super().__init__(celery)
        self.db_engine = db_engine
        self.seen: list[str] = []

    def publish(self, task_type, task_id, parameters):
        row = row_of(self.db_engine, task_id)
        self.seen.append(row["status"] if row else "missing")
        super().publish(task_type, task_id, parameters)


def test_the_row_is_committed_before_the_message_is_published(app, worker, db_engine):
    manager = app.extensions["tasker"].tasks
    manager.publisher = CheckingPublisher(app.extensions["celery"], db_engine)
    task_id = manager.submit("sum", {"a": 1, "b": 2})
    assert manager.publisher.seen == ["PENDING"]
    assert wait_for_output(app.test_client(), task_id)["result"] == 3


def test_an_outcome_arriving_twice_does_not_overwrite_the_first(app, db_engine):
    tasker = app.extensions["tasker"]
    callbacks = TaskCallbacks(tasker.db, tasker.cache)
    task_id = uuid.uuid4()
    with db_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tasks (id, name, parameters, status, queue) "
                "VALUES (:id, 'sum_two_numbers', '{}', 'PENDING', 'default')"
            ),
            {"id": str(task_id)},
        )
    assert callbacks.claim(task_id) == 1
    callbacks.record_success(task_id, 42)
    callbacks.record_success(task_id, 99)
    callbacks.record_failure(task_id, "late failure")
    callbacks.record_retry(task_id, "late retry")
    row = row_of(db_engine, task_id)
    assert (row["status"], row["result"], row["error"]) == (TaskStatus.COMPLETED, 42, None)
    assert callbacks.claim(task_id) is None
    assert tasker.cache.get_output(task_id) == {"status": "COMPLETED", "result": 42, "error": None}


def test_a_redelivered_message_does_not_run_finished_work_again(client, app, worker, db_engine, redis_url):
    task_id = client.post("/run-task", json={"task_name": "sum", "task_parameters": {"a": 1, "b": 1}})
    task_id = task_id.get_json()["task_uuid"]
    assert wait_for_output(client, task_id)["result"] == 2
    finished = row_of(db_engine, task_id)

    celery = app.extensions["celery"]
    celery.send_task("tasker.sum_two_numbers", kwargs={"a": 100, "b": 100}, task_id=task_id, queue="default")
    broker = redis.Redis.from_url(redis_url)
    poll(
        lambda: broker.llen("default") == 0 and broker.hlen("unacked") == 0,
        what="the duplicate to be handled",
    )
    broker.close()
    assert row_of(db_engine, task_id) == finished
