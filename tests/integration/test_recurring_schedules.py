"""Recurring schedules: the /api/v1/schedules resource, and one task per fire time."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from app.models import schedule as schedule_model
from app.models import task as task_model
from tests.conftest import child_env
from tests.support import kill_family, poll, row_of, start_celery


def db_now(db) -> datetime:
    return db.run(task_model.database_now)


@pytest.fixture
def create(client):
    """POST a schedule (a per-minute sum unless told otherwise); the test's schedules are deleted after."""
    made: list[str] = []

    def post(**fields):
        body = {"name": f"s-{uuid.uuid4().hex[:8]}", "task": "sum", "parameters": {"a": 1, "b": 2}}
        response = client.post("/api/v1/schedules", json=body | {"cron": "* * * * *"} | fields)
        if response.status_code == 201:
            made.append(response.get_json()["id"])
        return response

    yield post
    for schedule_id in made:
        client.delete(f"/api/v1/schedules/{schedule_id}")


def fire(scheduler, now: datetime) -> int:
    """One scheduler pass at `now`, waiting while a running beat holds the lock; the tasks it made."""
    return poll(lambda: scheduler.run_due(now), what="the lock")["fired"]


def tasks_of(db, schedule_id) -> list:
    query = sa.select(task_model.tasks).where(task_model.tasks.c.schedule_id == uuid.UUID(schedule_id))
    return db.run(lambda c: list(c.execute(query.order_by(task_model.tasks.c.scheduled_for))))


def test_create_read_list_pause_resume_delete(client, create, db):
    response = create(cron="*/5 * * * *", timezone="Europe/Paris", priority="high")
    assert response.status_code == 201, response.get_json()
    schedule = response.get_json()
    assert response.headers["Location"] == f"/api/v1/schedules/{schedule['id']}"
    assert schedule["task"] == "sum_two_numbers"  # the alias is stored as the task type's name
    assert (schedule["cron"], schedule["timezone"], schedule["priority"], schedule["enabled"]) == (
        "*/5 * * * *",
        "Europe/Paris",
        9,
        True,
    )
    next_run = datetime.fromisoformat(schedule["next_run_at"])
    assert next_run.minute % 5 == 0 and next_run.second == 0
    assert timedelta(0) < next_run - db_now(db) <= timedelta(minutes=5)
    assert schedule["last_run_at"] is None and schedule["last_task_id"] is None

    url = f"/api/v1/schedules/{schedule['id']}"
    assert client.get(url).get_json() == schedule
    listed = client.get("/api/v1/schedules").get_json()["schedules"]
    assert schedule in listed
    assert [s["name"] for s in listed] == sorted(s["name"] for s in listed)

    paused = client.patch(url, json={"enabled": False}).get_json()
    assert (paused["enabled"], paused["next_run_at"]) == (False, None)
    resumed = client.patch(url, json={"enabled": True, "cron": "0 9 * * mon"}).get_json()
    assert resumed["enabled"] is True and resumed["cron"] == "0 9 * * mon"
    local = datetime.fromisoformat(resumed["next_run_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0), resumed["next_run_at"]

    renamed = client.patch(url, json={"name": schedule["name"] + "-x", "parameters": {"a": 5, "b": 5}})
    assert renamed.status_code == 200
    assert renamed.get_json()["parameters"] == {"a": 5, "b": 5}
    assert renamed.get_json()["next_run_at"] == resumed["next_run_at"]  # timing unchanged

    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert client.delete(url).status_code == 404
    assert client.patch(url, json={"enabled": False}).status_code == 404


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cron": "*/5 * * *"}, "cron", "5 fields"),
        ({"cron": "61 * * * *"}, "cron", "minute field '61' is not valid: use 0-59"),
        ({"cron": "* 24 * * *"}, "cron", "hour"),
        ({"cron": "*/0 * * * *"}, "cron", "step"),
        ({"cron": "* * * foo *"}, "cron", "month"),
        ({"cron": "0 0 31 2 *"}, "cron", "never fires"),
        ({"cron": ""}, "cron", "Length"),
        ({"task": "no_such_task"}, "task", "Unknown task"),
        ({"task": 7}, "task", "Not a valid string"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
        ({"parameters": {"a": "one", "b": 2}}, "parameters", "Must be a number"),
        ({"parameters": []}, "parameters", "Not a valid mapping"),
        ({"priority": "urgent"}, "priority", "low, normal, high"),
        ({"enabled": "maybe"}, "enabled", "boolean"),
        ({"name": ""}, "name", "Length"),
        ({"every": 5}, "every", "Unknown field"),
    ],
)
def test_bad_schedules_are_400_naming_the_field(create, fields, field, words):
    response = create(**fields)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert field in body["details"], body
    assert words.lower() in (body["error"] + str(body["details"])).lower(), body


def test_names_are_unique_and_patches_are_checked(client, create):
    schedule = create().get_json()
    duplicate = create(name=schedule["name"])
    assert duplicate.status_code == 409 and duplicate.get_json()["details"] == {"name": schedule["name"]}
    url = f"/api/v1/schedules/{schedule['id']}"
    assert client.patch(url, json={}).status_code == 400
    assert client.patch(url, json={"cron": "* * *"}).get_json()["details"].keys() == {"cron"}
    # A new task type must accept the parameters the schedule has.
    wrong = client.patch(url, json={"task": "find_longest_consecutive_letters"})
    assert wrong.status_code == 400 and "parameters" in wrong.get_json()["details"]
    changed = client.patch(
        url, json={"task": "find_longest_consecutive_letters", "parameters": {"string": "aab"}}
    )
    assert changed.status_code == 200 and changed.get_json()["task"] == "find_longest_consecutive_letters"
    other = create().get_json()
    clash = client.patch(f"/api/v1/schedules/{other['id']}", json={"name": schedule["name"]})
    assert clash.status_code == 409
    assert client.get("/api/v1/schedules/not-a-uuid").status_code == 400
    assert client.patch(url, data="{}", content_type="text/plain").status_code == 415


def test_moving_time_one_task_per_fire_time(app, client, create, db, worker):
    """An hour of a */5 schedule, minute by minute: twelve tasks, one per fire time, all run."""
    manager = app.extensions["tasker"].scheduler
    schedule = create(cron="*/5 * * * *", parameters={"a": 20, "b": 22}).get_json()
    first = datetime.fromisoformat(schedule["next_run_at"])
    fire(manager, first - timedelta(seconds=1))
    assert tasks_of(db, schedule["id"]) == []  # not yet
    for minute in range(60):
        now = first + timedelta(minutes=minute, seconds=1)
        fire(manager, now)
        fire(manager, now)  # firing again at the same time makes nothing more
        assert len(tasks_of(db, schedule["id"])) == minute // 5 + 1
    rows = tasks_of(db, schedule["id"])
    assert len(rows) == 12
    fire_times = [row.scheduled_for for row in rows]
    assert fire_times == [first + timedelta(minutes=5 * k) for k in range(12)]
    after = client.get(f"/api/v1/schedules/{schedule['id']}").get_json()
    assert datetime.fromisoformat(after["last_run_at"]) == fire_times[-1]
    assert datetime.fromisoformat(after["next_run_at"]) == first + timedelta(minutes=60)
    assert after["last_task_id"] == str(rows[-1].id)

    for row in rows:  # real tasks, run by the worker, naming their schedule
        poll(lambda row=row: row_of(db, row.id).status == "COMPLETED", what="a scheduled task to run")
        resource = client.get(f"/api/v1/tasks/{row.id}").get_json()
        assert resource["result"] == 42 and resource["schedule_id"] == schedule["id"]
        assert datetime.fromisoformat(resource["scheduled_for"]) == row.scheduled_for
    listed = client.get(f"/api/v1/tasks?schedule_id={schedule['id']}&limit=200").get_json()["tasks"]
    assert sorted(t["id"] for t in listed) == sorted(str(row.id) for row in rows)


def test_missed_fire_times_are_made_up_once_and_paused_schedules_never_fire(app, client, create, db, worker):
    manager = app.extensions["tasker"].scheduler
    schedule = create(cron="*/5 * * * *").get_json()
    first = datetime.fromisoformat(schedule["next_run_at"])
    fire(manager, first + timedelta(hours=3))  # beat was down for three hours
    assert [r.scheduled_for for r in tasks_of(db, schedule["id"])] == [first]
    after = client.get(f"/api/v1/schedules/{schedule['id']}").get_json()
    assert datetime.fromisoformat(after["next_run_at"]) == first + timedelta(hours=3, minutes=5)

    paused = create(cron="* * * * *", enabled=False).get_json()
    assert paused["next_run_at"] is None
    fire(manager, db_now(db) + timedelta(days=1))
    assert tasks_of(db, paused["id"]) == []
    poll(
        lambda: all(r.status == "COMPLETED" for r in tasks_of(db, schedule["id"])),
        timeout=60,  # behind whatever the session's worker has queued on a loaded machine
        what="the task to run",
    )


def test_the_unique_fire_time_holds_without_the_lock(app, client, create, db, worker):
    """Two firings of the same schedule row race with no lock: one task; a known fire time: none."""
    manager = app.extensions["tasker"].scheduler
    schedule = create(cron="* * * * *").get_json()
    schedule_id = uuid.UUID(schedule["id"])
    row = db.run(lambda c: schedule_model.get(c, schedule_id))
    now = row.next_run_at + timedelta(seconds=1)
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda _: manager._fire(row, now), range(4)))
    assert sum(made) == 1 and len(tasks_of(db, schedule["id"])) == 1

    # A task already exists for the next fire time (say a second beat made it): no second one,
    # and the schedule still moves on.
    row = db.run(lambda c: schedule_model.get(c, schedule_id))
    db.run(
        lambda c: task_model.insert(
            c,
            uuid.uuid4(),
            "sum_two_numbers",
            {"a": 1, "b": 2},
            "default",
            status="CANCELLED",
            schedule_id=schedule_id,
            scheduled_for=row.next_run_at,
        )
    )
    assert manager._fire(row, row.next_run_at + timedelta(seconds=1)) == 0
    assert len(tasks_of(db, schedule["id"])) == 2
    moved = db.run(lambda c: schedule_model.get(c, schedule_id))
    assert moved.next_run_at == row.next_run_at + timedelta(minutes=1)
    poll(lambda: tasks_of(db, schedule["id"])[0].status == "COMPLETED", what="the task to run")


def test_two_beat_processes_make_one_task_per_fire_time(stack, create, db, worker, beat, tmp_path):
    """A second `celery beat` by mistake: the due schedule still makes exactly one task."""
    schedule_file = ["--schedule", str(tmp_path / "beat2-schedule")]
    second = start_celery("beat", child_env(stack.env), tmp_path / "beat2.log", *schedule_file)
    try:
        # Yearly, so its own next fire time cannot come while the test runs (with "* * * * *" a
        # minute boundary between creating it and moving its fire time made a second, real task).
        schedule = create(cron="0 0 1 1 *").get_json()
        schedule_id = uuid.UUID(schedule["id"])
        due = db_now(db) - timedelta(seconds=1)  # move its fire time into the past: due now
        query = schedule_model.schedules.update().where(schedule_model.schedules.c.id == schedule_id)
        db.run(lambda c: c.execute(query.values(next_run_at=due)))
        poll(lambda: tasks_of(db, schedule["id"]), what="the schedule to fire")
        # Let both beats tick a few more times before counting.
        poll(lambda: db_now(db) > due + timedelta(seconds=4), what="a few beat ticks")
        rows = tasks_of(db, schedule["id"])
        assert [r.scheduled_for for r in rows] == [due]
        poll(lambda: row_of(db, rows[0].id).status == "COMPLETED", what="the task to run")
        assert row_of(db, rows[0].id).attempts == 1
    finally:
        kill_family(second)
