"""countdown and run_at: SCHEDULED in the database, published by beat when due, not before."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from app.models import task as task_model
from tests.support import poll, row_of


def submit(client, **options):
    body = {"name": "sum", "parameters": {"a": 2, "b": 2}, **options}
    return client.post("/api/v1/tasks", json=body)


def db_now(db) -> datetime:
    return db.run(task_model.database_now)


def assert_ran_on_time(db, task_id):
    poll(lambda: row_of(db, task_id).status == "COMPLETED", timeout=20, what="the scheduled task to run")
    row = row_of(db, task_id)
    late = (row.started_at - row.run_at).total_seconds()
    assert 0 <= late < 3, f"started {late:.2f} s after its time"
    assert row.result == 4


def test_countdown_runs_the_task_when_due_and_not_before(client, db, worker, beat):
    response = submit(client, countdown=2)
    assert response.status_code == 202
    task = response.get_json()
    assert task["status"] == "SCHEDULED" and task["run_at"] is not None
    assert_ran_on_time(db, task["id"])


def test_run_at_with_a_zone(client, db, worker, beat):
    when = (db_now(db) + timedelta(seconds=2)).astimezone(UTC).isoformat()
    response = submit(client, run_at=when)
    assert response.status_code == 202 and response.get_json()["status"] == "SCHEDULED"
    assert_ran_on_time(db, response.get_json()["id"])


def test_a_cancelled_scheduled_task_never_runs(client, db, worker, beat):
    task = submit(client, countdown=1).get_json()
    cancelled = client.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "CANCELLED"
    due = row_of(db, task["id"]).run_at
    poll(lambda: db_now(db) > due + timedelta(seconds=3), what="the task's time to pass")
    row = row_of(db, task["id"])
    assert (row.status, row.attempts, row.result) == ("CANCELLED", 0, None)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"countdown": -1}, "countdown"),
        ({"countdown": 31 * 86400}, "countdown"),
        ({"run_at": "2020-01-01T00:00:00Z"}, "run_at"),
        ({"run_at": (datetime.now(UTC) + timedelta(days=31)).isoformat()}, "run_at"),
        ({"run_at": "2030-01-01T00:00:00"}, "run_at"),
        ({"run_at": "tomorrow"}, "run_at"),
        ({"countdown": 5, "run_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat()}, "run_at"),
    ],
)
def test_bad_schedules_are_400(client, options, field):
    response = submit(client, **options)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["error"]


def test_a_due_task_is_published_once_however_many_beats(app, db, worker, beat):
    scheduler = app.extensions["tasker"].scheduler

    def while_held() -> tuple[object] | None:
        with db.exclusive("tasker-scheduler") as held:  # while one publisher works, another does nothing
            return (scheduler.run_due(),) if held else None  # None: the running beat has it now

    assert poll(while_held, what="the scheduler's lock") == (None,)
    task_id = uuid.UUID(submit(app.test_client(), countdown=0.5).get_json()["id"])
    poll(lambda: db_now(db) > row_of(db, task_id).run_at, what="the task to fall due")
    with ThreadPoolExecutor(3) as pool:  # three more publishers race the real beat
        passes = list(pool.map(lambda _: scheduler.run_due(), range(3)))
    assert sum(p["released"] for p in passes if p is not None) <= 1
    poll(lambda: row_of(db, task_id).status == "COMPLETED", what="the task to run")
    assert row_of(db, task_id).attempts == 1
