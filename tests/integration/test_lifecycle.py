"""The lifecycle promises: persist before publish, one outcome per task, no rerun of finished work."""

from __future__ import annotations

import copy
import uuid

import pytest

from app.core.beat.recovery import Recovery, Thresholds
from app.core.broker import broker_class
from app.core.errors import InvalidInput
from app.core.task_manager import SubmitRequest
from app.models import task as task_model
from app.models.task import TaskStatus
from app.tasks.callbacks import TaskCallbacks
from app.tasks.errors import TaskFailed
from app.tasks.task_functions import process_data, sum_two_numbers
from tests.conftest import build_app
from tests.integration.test_observability import samples, value
from tests.support import claim, insert_task, make_old, poll, row_of, wait_for_output

# Only rows made an hour old by the test are old enough for these sweeps.
THRESHOLDS = Thresholds(pending_after=1800, orphan_after=1800)


def for_old_rows(recovery: Recovery) -> Recovery:
    """The app's sweep, with THRESHOLDS: other tests' rows sharing the database are left alone."""
    recovery = copy.copy(recovery)
    recovery.thresholds = THRESHOLDS
    return recovery


def checking_broker(app, other_db):
    """The app's broker, enqueueing for real, but first looking for each row through another
    app's connections."""

    class Checking(broker_class(app.config)):
        def __init__(self, celery):
            super().__init__(celery)
            self.seen: list[str] = []

        def enqueue(self, message):
            self.look(message)
            super().enqueue(message)

        def enqueue_many(self, messages):  # the batched submit's (SUBMIT_BATCH_MAX)
            for message in messages:
                self.look(message)
            return super().enqueue_many(messages)

        def look(self, message):
            row = row_of(other_db, message.task_id)
            self.seen.append(row.status if row else "missing")

    return Checking(app.extensions["celery"])


def test_the_row_is_committed_before_the_message_is_published(app, stack_env, worker):
    other = build_app(stack_env)
    manager = app.extensions["tasker"].tasks
    manager.broker = checking_broker(app, other.extensions["tasker"].db)
    assert manager.batcher is not None  # submits are batched by default: that path is checked here
    task_id = manager.submit(SubmitRequest("sum", {"a": 1, "b": 2})).id
    assert manager.broker.seen == ["PENDING"]
    assert wait_for_output(app.test_client(), task_id)["result"] == 3
    other.extensions["tasker"].db.dispose()


def test_an_outcome_arriving_twice_does_not_overwrite_the_first(app, db):
    cache = app.extensions["tasker"].cache
    callbacks = TaskCallbacks(app.extensions["tasker"].endings)
    task_id = insert_task(db)
    assert callbacks.claim(task_id).attempts == 1
    callbacks.record_success(task_id, 42)
    callbacks.record_success(task_id, 99)
    callbacks.record_failure(task_id, "late failure")
    callbacks.record_retry(task_id, "late retry")
    row = row_of(db, task_id)
    assert (row.status, row.result, row.error) == (TaskStatus.COMPLETED, 42, None)
    assert callbacks.claim(task_id) is None
    assert cache.get_output(task_id, "default") == {"status": "COMPLETED", "result": 42, "error": None}


def test_a_task_started_too_often_fails_instead_of_running_again(app, db):
    callbacks = TaskCallbacks(app.extensions["tasker"].endings)
    task_id = insert_task(db)
    for attempt in (1, 2):
        assert callbacks.claim_within(task_id, max_attempts=2)
        db.run(lambda c, a=attempt: task_model.requeue(c, task_id, "STARTED", a))  # its worker died
    assert not callbacks.claim_within(task_id, max_attempts=2)
    row = row_of(db, task_id)
    assert row.status == "FAILED" and row.attempts == 3
    assert row.error.startswith("The task was started 2 times without finishing")


def test_a_redelivered_message_does_not_run_finished_work_again(client, app, worker, db):
    response = client.post("/run-task", json={"task_name": "sum", "task_parameters": {"a": 1, "b": 1}})
    task_id = response.get_json()["task_uuid"]
    assert wait_for_output(client, task_id)["result"] == 2
    finished = row_of(db, task_id)

    celery = app.extensions["celery"]
    celery.send_task("tasker.sum_two_numbers", kwargs={"a": 100, "b": 100}, task_id=task_id, queue="default")
    skipped = f"task {task_id} is COMPLETED; this message does not run it again"
    poll(lambda: skipped in worker.log_path.read_text(), what="the worker to skip the duplicate")
    assert row_of(db, task_id) == finished


def test_a_message_no_submit_made_is_refused_saying_why(app, worker, db):
    """What an old producer or a bare send_task sends: no row, so nothing would record an outcome.
    The worker does not run it, and says so at WARNING with what to do instead."""
    stray = str(uuid.uuid4())
    app.extensions["celery"].send_task(
        "tasker.sum_two_numbers", kwargs={"a": 1, "b": 1}, task_id=stray, queue="default"
    )
    refused = f"message {stray} for tasker.sum_two_numbers refused: no task row has that id"
    poll(lambda: refused in worker.log_path.read_text(), what="the worker to refuse the stray message")
    line = next(line for line in worker.log_path.read_text().splitlines() if refused in line)
    assert "WARNING" in line and "POST /api/v1/tasks" in line
    assert row_of(db, stray) is None


def test_python_callers_submit_with_delay_and_send_task_and_get_the_row_back(app, worker, db):
    """.delay(), apply_async() and send_task() as Celery users write them go through the submit
    path: the row exists before the message, and the handle's id is the row's."""
    handle = sum_two_numbers.delay(a=1, b=2)
    assert row_of(db, handle.id) is not None  # the row first
    assert handle.get(timeout=20) == 3 and handle.successful() and handle.status == "COMPLETED"
    celery = app.extensions["celery"]
    assert celery.send_task("tasker.sum_two_numbers", kwargs={"a": 2, "b": 3}).get(timeout=20) == 5
    assert (
        sum_two_numbers.apply_async((4, 5), priority=9).get(timeout=20) == 9
    )  # positional, named as the function's
    # The reference system's name for it (its module path) is the same task.
    assert celery.send_task("app.tasks.task_functions.sum_two_numbers", args=[1, 1]).get(timeout=20) == 2
    failed = process_data.delay(duration_seconds=0.05, fail_at_percent=0)
    with pytest.raises(TaskFailed, match="Failed on purpose"):
        failed.get(timeout=20)
    assert row_of(db, failed.id).status == "FAILED" and failed.failed()
    with pytest.raises(InvalidInput) as bad:
        sum_two_numbers.delay(a="one", b=2)
    assert "a" in bad.value.details["parameters"]
    with pytest.raises(TypeError, match="link"):
        sum_two_numbers.apply_async(kwargs={"a": 1, "b": 2}, link=sum_two_numbers.s())


def test_the_recovery_sweep_republishes_stranded_rows(client, app, worker, db):
    recovery = for_old_rows(app.extensions["tasker"].recovery)
    stranded = insert_task(db)  # a row whose message never reached the broker
    make_old(db, stranded, "updated_at")
    assert recovery.sweep()["republished"] == 1
    assert wait_for_output(client, str(stranded)) == {"status": "COMPLETED", "result": 3, "error": None}

    dead = insert_task(db)  # a row whose worker died long ago
    db.run(lambda c: claim(c, dead, "gone@nowhere"))
    make_old(db, dead, "started_at")
    assert recovery.sweep()["requeued"] == 1
    assert wait_for_output(client, str(dead))["status"] == "COMPLETED"
    assert row_of(db, dead).attempts == 2


def test_a_task_the_sweep_gives_up_on_is_counted_once_as_failed(client, app, db):
    """tasker_tasks_finished_total promises every task once, whichever part of Tasker ended it."""
    recovery = for_old_rows(app.extensions["tasker"].recovery)
    spent = insert_task(db)  # its worker died on each of its three attempts
    for _ in range(3):
        db.run(lambda c: task_model.requeue(c, spent, "STARTED"))
        db.run(lambda c: claim(c, spent, "gone@nowhere"))
    make_old(db, spent, "started_at")
    before = finished(client, "FAILED")
    assert recovery.sweep()["failed"] == 1
    assert row_of(db, spent).status == "FAILED"
    assert finished(client, "FAILED") == before + 1
    assert recovery.sweep()["failed"] == 0 and finished(client, "FAILED") == before + 1


def finished(client, status: str) -> float:
    page = samples(client.get("/metrics").get_data(as_text=True))
    return value(page, "tasker_tasks_finished_total", task_type="sum_two_numbers", status=status)


def test_two_sweeps_never_overlap(app, db):
    with db.exclusive("tasker-recovery") as held:
        assert held
        assert app.extensions["tasker"].recovery.sweep()["skipped"] == 1
