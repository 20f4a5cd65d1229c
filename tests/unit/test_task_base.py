"""The task base class and the per-run context, on SQLite, run as Celery's tracer runs a task."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from celery.exceptions import Ignore

from app.models.migrate import upgrade
from app.tasks.base import describe_failure
from app.tasks.errors import TaskFailed, TransientError
from app.wiring import build_tasker
from config import load_config
from tests.support import insert_task, poll, row_of


@pytest.fixture
def tasker(tmp_path):
    tasker, celery = build_tasker(load_config("testing", {"TASKER_DATA_DIR": str(tmp_path)}))
    upgrade(tasker.db.engine)
    yield tasker, celery
    tasker.db.dispose()


def run(celery: Any, name: str, task_id: uuid.UUID, **kwargs: Any) -> Any:
    """What Celery's tracer does with one message: __call__, then on_success or on_failure."""
    task = celery.tasks[f"tasker.{name}"]
    task.push_request(id=str(task_id), hostname="w1@host", called_directly=False, retries=0)
    try:
        retval = task(**kwargs)
    except Ignore:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to on_failure, as the tracer does
        task.on_failure(exc, str(task_id), (), kwargs, None)
        return exc
    else:
        task.on_success(retval, str(task_id), (), kwargs)
        return retval
    finally:
        task.pop_request()


def test_a_task_is_claimed_run_and_its_outcome_recorded(tasker):
    tasker, celery = tasker
    task_id = insert_task(tasker.db, "sum_two_numbers", {"a": 1, "b": 2})
    assert run(celery, "sum_two_numbers", task_id, a=1, b=2) == 3
    row = row_of(tasker.db, task_id)
    assert (row.status, row.result, row.attempts, row.worker) == ("COMPLETED", 3, 1, "w1@host")
    assert tasker.cache.get_output(task_id, "default") == {"status": "COMPLETED", "result": 3, "error": None}


def test_a_finished_task_is_not_run_again(tasker):
    tasker, celery = tasker
    task_id = insert_task(tasker.db, "sum_two_numbers", {"a": 1, "b": 2})
    run(celery, "sum_two_numbers", task_id, a=1, b=2)
    with pytest.raises(Ignore):
        run(celery, "sum_two_numbers", task_id, a=100, b=100)
    assert row_of(tasker.db, task_id).result == 3


def test_a_running_task_that_checks_for_cancellation_ends_cancelled(tasker):
    tasker, celery = tasker
    task_id = insert_task(tasker.db, "process_data", {"duration_seconds": 20})
    outcome: list[Any] = []
    runner = threading.Thread(
        target=lambda: outcome.append(run(celery, "process_data", task_id, duration_seconds=20))
    )
    runner.start()
    poll(lambda: (row_of(tasker.db, task_id).progress or 0) > 0, what="the task to make progress")
    resource, cancelled_at_once = tasker.tasks.cancel(task_id)
    assert not cancelled_at_once and resource["cancel_requested"]
    runner.join(timeout=5)
    assert not runner.is_alive()
    row = row_of(tasker.db, task_id)
    assert (row.status, row.error) == ("CANCELLED", "Cancelled while running, at the client's request.")
    assert 0 < row.progress < 20  # it stopped at the step under way


def test_each_run_has_its_own_context_when_threads_share_the_task(tasker):
    tasker, celery = tasker
    counts = [100, 200, 300]
    ids = [
        insert_task(tasker.db, "process_data", {"duration_seconds": 0.3, "record_count": n}) for n in counts
    ]
    threads = [
        threading.Thread(
            target=run,
            args=(celery, "process_data", task_id),
            kwargs={"duration_seconds": 0.3, "record_count": n},
        )
        for task_id, n in zip(ids, counts, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for task_id, n in zip(ids, counts, strict=True):
        row = row_of(tasker.db, task_id)
        assert (row.status, row.progress, row.progress_message) == ("COMPLETED", 100, f"{n} of {n} records")
        assert row.result["records_processed"] == n


def test_progress_is_written_at_most_every_quarter_second(tasker, mocker):
    tasker, celery = tasker
    writes = mocker.spy(celery.services.callbacks, "report_progress")
    task_id = insert_task(tasker.db, "process_data", {"duration_seconds": 0.2})
    run(celery, "process_data", task_id, duration_seconds=0.2)  # 20 steps of 10 ms
    assert 1 <= writes.call_count <= 3  # the first step, perhaps one more, and 100 %
    assert writes.call_args.args[1:] == (100, "1000 of 1000 records")


@pytest.mark.parametrize(
    ("exc", "described"),
    [
        (TaskFailed("City not found: x"), "City not found: x"),
        (TransientError("OpenAI did not answer within 1 s"), "OpenAI did not answer within 1 s"),
        (ValueError("bad"), "ValueError: bad"),
        (KeyError(), "KeyError"),
    ],
)
def test_failures_are_worded_the_same_while_retrying_and_once_failed(exc, described):
    assert describe_failure(exc) == described
