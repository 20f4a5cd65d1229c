"""Concurrency keys on every stack: a key never runs more than its limit (sampled while it runs,
and from the rows' own start and end times), the rest WAITING with no message; the strategies;
a type's declared key and how a submit may narrow it; a scheduled task waits for a slot when due;
and the sweep's fallback admits what an ending did not (app/core/concurrency.py)."""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.models import task as task_model
from tests.integration.test_own_task_types import finished
from tests.support import poll

pytestmark = pytest.mark.integration

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def submit(client, name: str, parameters: dict, **options) -> dict:
    response = client.post("/api/v1/tasks", json={"name": name, "parameters": parameters} | options)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


class Sampler:
    """Counts the key's STARTED rows every 50 ms, in the database, until stopped."""

    def __init__(self, db, key: str):
        self.db, self.key, self.samples = db, key, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        tasks = task_model.tasks
        query = sa.select(sa.func.count()).where(
            tasks.c.concurrency_key == self.key, tasks.c.status == "STARTED"
        )
        while not self.stop.wait(0.05):
            self.samples.append(self.db.run(lambda conn: conn.scalar(query)))

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def most_at_once(rows) -> int:
    """The most runs of `rows` that overlapped, from their started_at and completed_at."""
    edges = sorted([(row.started_at, 1) for row in rows] + [(row.completed_at, -1) for row in rows])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


def test_a_key_runs_at_most_its_limit_in_order_and_the_rest_wait(client, worker, db):
    group = uuid.uuid4().hex[:10]
    first = submit(client, "grouped", {"group": group, "seconds": 0.3}, concurrency={"limit": 1})
    key = first["concurrency"]["key"]
    assert (first["status"], first["concurrency"]) == ("PENDING", {"key": key, "limit": 1, "slot": 0})
    with Sampler(db, key) as sampler:
        rest = [
            submit(client, "grouped", {"group": group, "seconds": 0.3}, concurrency={"limit": 1})
            for _ in range(5)
        ]
        assert {(t["status"], t["concurrency"]["slot"]) for t in rest} == {("WAITING", None)}
        assert {str(t["waiting_for"]) for t in rest} == {str({"concurrency": key})}
        ended = [finished(client, t["id"]) for t in [first, *rest]]
    assert [t["status"] for t in ended] == ["COMPLETED"] * 6
    assert max(sampler.samples) == 1 and len(sampler.samples) > 20
    rows = db.run(lambda conn: task_model.rows(conn, [uuid.UUID(t["id"]) for t in ended]))
    assert most_at_once(rows) == 1
    assert [str(r.id) for r in sorted(rows, key=lambda r: r.started_at)] == [
        t["id"] for t in ended
    ]  # oldest first
    assert "waiting_for" not in ended[-1]


def test_a_declared_key_is_narrowed_never_widened_and_shown_in_the_catalogue(client, worker, db):
    declared = next(
        t for t in client.get("/api/v1/task-types").get_json()["task_types"] if t["name"] == "grouped"
    )
    assert declared["concurrency"] == {"key": {"$param": "/group"}, "limit": 2, "strategy": "queue"}
    group = uuid.uuid4().hex[:10]
    with Sampler(db, f"grouped:owner=default:/group={group}") as sampler:
        tasks = [submit(client, "grouped", {"group": group, "seconds": 0.3}) for _ in range(6)]
        ended = [finished(client, t["id"]) for t in tasks]
    assert [t["status"] for t in tasks] == ["PENDING", "PENDING", *["WAITING"] * 4]
    assert [t["status"] for t in ended] == ["COMPLETED"] * 6 and max(sampler.samples) == 2
    rows = db.run(lambda conn: task_model.rows(conn, [uuid.UUID(t["id"]) for t in ended]))
    assert most_at_once(rows) == 2

    for concurrency, field, rule in (
        ({"limit": 3}, "concurrency.limit", "At most 2, the task type's own limit"),
        ({"key": "owner"}, "concurrency.key", "The task type declares its key"),
        ({"limit": 0}, "concurrency", "greater than or equal to 1"),
        ({"limit": 1, "strategy": "drop"}, "concurrency", "Must be one of: queue, cancel_in_progress"),
        ({"key": {"$param": "no-slash"}, "limit": 1}, "concurrency", 'Must be "global", "owner" or'),
    ):
        body = {"name": "grouped", "parameters": {"group": group}, "concurrency": concurrency}
        answer = client.post("/api/v1/tasks", json=body)
        assert answer.status_code == 400, answer.get_json()
        assert field in answer.get_json()["details"] and rule in answer.get_json()["error"]
    body = {
        "name": "sum",
        "parameters": {"a": 1, "b": 2},
        "concurrency": {"key": {"$param": "/c"}, "limit": 1},
    }
    answer = client.post("/api/v1/tasks", json=body).get_json()
    assert answer["details"] == {
        "parameters.c": ["Required: sum_two_numbers's concurrency key is made of it (/c)."]
    }


def rapid(client, strategy: str) -> list[dict]:
    """Ten submits of one key (limit 1) as fast as they come, each answered; then all ended."""
    count = random.randrange(10**6, 10**7)  # the key: a process_data of this record_count
    parameters = {"duration_seconds": 1.0, "record_count": count}
    concurrency = {"key": {"$param": "/record_count"}, "limit": 1, "strategy": strategy}
    made = [submit(client, "process_data", parameters, concurrency=concurrency) for _ in range(10)]
    return [finished(client, t["id"]) for t in made]


def test_cancel_in_progress_leaves_only_the_last(client, worker):
    ended = rapid(client, "cancel_in_progress")
    assert [t["status"] for t in ended] == ["CANCELLED"] * 9 + ["COMPLETED"]
    assert all("a newer task of its concurrency key" in t["error"] for t in ended[:9]), ended


def test_keep_newest_queued_runs_the_first_and_the_last(client, worker):
    ended = rapid(client, "keep_newest_queued")
    assert [t["status"] for t in ended] == ["COMPLETED"] + ["CANCELLED"] * 8 + ["COMPLETED"]
    assert all("(keep_newest_queued)" in t["error"] for t in ended[1:9])


def test_cancel_newest_keeps_the_first_and_refuses_the_rest_at_once(client, worker):
    count = random.randrange(10**6, 10**7)
    parameters = {"duration_seconds": 1.0, "record_count": count}
    concurrency = {"key": {"$param": "/record_count"}, "limit": 1, "strategy": "cancel_newest"}
    made = [submit(client, "process_data", parameters, concurrency=concurrency) for _ in range(10)]
    assert [t["status"] for t in made] == ["PENDING"] + ["CANCELLED"] * 9
    assert made[1]["error"].startswith(
        "Cancelled: its concurrency key process_data:owner=default:/record_count="
    )
    assert finished(client, made[0]["id"])["status"] == "COMPLETED"
    again = client.post(f"/api/v1/tasks/{made[1]['id']}/retry").get_json()  # under the same key, queued
    assert again["concurrency"] == made[0]["concurrency"] | {"slot": 0} and again["status"] == "PENDING"
    assert finished(client, again["id"])["status"] == "COMPLETED"


def test_a_scheduled_task_waits_for_a_slot_when_due(app, client, worker):
    group = uuid.uuid4().hex[:10]
    running = submit(client, "grouped", {"group": group, "seconds": 1.5}, concurrency={"limit": 1})
    later = submit(client, "grouped", {"group": group}, concurrency={"limit": 1}, countdown=1)
    assert (later["status"], later["concurrency"]["slot"]) == ("SCHEDULED", None)
    due = app.extensions["tasker"].db.run(task_model.database_now) + timedelta(seconds=2)
    released = poll(lambda: app.extensions["tasker"].scheduler.run_due(due), what="the scheduler's lock")
    assert released["released"] >= 1
    now = client.get(f"/api/v1/tasks/{later['id']}").get_json()
    assert finished(client, running["id"])["status"] == "COMPLETED"
    assert now["status"] == "WAITING" and now["waiting_for"] == {"concurrency": running["concurrency"]["key"]}
    assert finished(client, later["id"])["status"] == "COMPLETED"


def test_the_sweep_admits_a_task_no_ending_admitted(app, client, worker, db):
    group = uuid.uuid4().hex[:10]
    key = f"grouped:owner=default:/group={group}"
    holder = uuid.uuid4()  # a row holding the key's one slot, with no message: it never runs
    db.run(lambda conn: task_model.insert(
        conn, holder, "grouped", {"group": group}, "default",
        concurrency_key=key, concurrency_limit=1, concurrency_slot=0,
    ))  # fmt: skip
    waiting = submit(client, "grouped", {"group": group}, concurrency={"limit": 1})
    assert waiting["waiting_for"] == {"concurrency": key}
    tasks = task_model.tasks
    # The slot freed by a write that admits nothing (as only a bug would leave it).
    freed = tasks.update().where(tasks.c.id == holder).values(status="CANCELLED")
    db.run(lambda conn: conn.execute(freed))
    assert client.get(f"/api/v1/tasks/{waiting['id']}").get_json()["status"] == "WAITING"
    later = db.run(task_model.database_now) + timedelta(seconds=1)
    assert app.extensions["tasker"].recovery.admit_waiting(later) == 1
    assert finished(client, waiting["id"])["status"] == "COMPLETED"
