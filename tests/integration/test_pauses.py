"""Paused queues on every stack (app/core/pauses.py): a paused queue starts none of its tasks,
whether they are submitted during the pause (held at submit) or already queued (held by the
worker that takes them); resume runs them highest priority first; the pause survives a restart,
is shown in /api/v1/queues and the metrics, and only admins (or open mode) may set it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa

from app.models import task as task_model
from tests.conftest import build_app
from tests.support import poll

pytestmark = pytest.mark.integration

QUEUE = "default"  # sum's and grouped's


@pytest.fixture
def unserved(stack):
    """The stack's database with a broker of its own that no worker consumes."""
    app = build_app({**stack.env, **stack.new_broker()})
    yield app
    app.extensions["tasker"].db.dispose()


@contextmanager
def paused(client, queue: str = QUEUE) -> Iterator[dict]:
    """The queue paused for the block, resumed after it whatever happens (the stack is shared)."""
    answer = client.post(f"/api/v1/queues/{queue}/pause")
    assert answer.status_code == 200, answer.get_json()
    try:
        yield answer.get_json()
    finally:
        client.post(f"/api/v1/queues/{queue}/resume")


def submit(client, name: str, parameters: dict, **options) -> dict:
    response = client.post("/api/v1/tasks", json={"name": name, "parameters": parameters} | options)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def listed(client, tag: str) -> list[dict]:
    return client.get(f"/api/v1/tasks?tag=run:{tag}&limit=200").get_json()["tasks"]


def test_a_paused_queue_starts_nothing_and_resume_runs_it_all_highest_priority_first(client, worker):
    tag = uuid.uuid4().hex[:10]
    priorities = [p for p in range(10) for _ in range(10)]
    random.Random(7).shuffle(priorities)
    with paused(client) as state:
        assert (state["queue"], state["paused"], state["held"]) == (QUEUE, True, 0)
        submitted = [
            submit(client, "sum", {"a": n, "b": 1}, priority=p, tags=[f"run:{tag}"])
            for n, p in enumerate(priorities)
        ]
        assert {t["status"] for t in submitted} == {"WAITING"}
        assert all(t["waiting_for"] == {"queue_paused": QUEUE} for t in submitted)
        queue = next(q for q in client.get("/api/v1/queues").get_json()["queues"] if q["name"] == QUEUE)
        assert queue["paused"] is True and queue["held"] >= 100
        # The worker is up and idle: a task of another queue runs meanwhile, none of this one starts.
        other = submit(client, "weather", {"city": "Paris"})
        poll(lambda: client.get(f"/api/v1/tasks/{other['id']}?wait=5").get_json()["started_at"], what="other")
        assert all(t["started_at"] is None and t["status"] == "WAITING" for t in listed(client, tag))
        resumed = client.post(f"/api/v1/queues/{QUEUE}/resume").get_json()
        assert resumed["paused"] is False and resumed["released"] >= 100

    def all_done() -> list[dict] | None:
        tasks = listed(client, tag)
        return tasks if all(t["status"] == "COMPLETED" for t in tasks) else None

    tasks = poll(all_done, timeout=60, what="the held tasks to complete")
    assert len(tasks) == 100 and all(t["attempts"] == 1 for t in tasks)
    # Published highest first: the two pool processes may swap neighbours (SQLite's times are to
    # the millisecond, so two starts may tie). Rarely one task starts late (seen once on RabbitMQ:
    # a 7 after fifteen 5s, 15 pairs out of order); a shuffled order has about 2,000 such pairs.
    order = [t["priority"] for t in sorted(tasks, key=lambda t: (t["started_at"], -t["priority"]))]
    window = 6
    inversions = [(i, j) for i in range(100) for j in range(i + window, 100) if order[i] < order[j]]
    assert len(inversions) <= 30, f"out of priority order at {inversions[:5]}: {' '.join(map(str, order))}"


def test_a_task_already_queued_is_held_by_the_worker_and_its_slot_freed(client, worker, db):
    """A task with a concurrency key is not held at submit: admitted, published, and held by the
    worker's claim, which frees its slot. Resume admits it again."""
    group = uuid.uuid4().hex[:10]
    with paused(client):
        task = submit(client, "grouped", {"group": group}, concurrency={"limit": 1})

        def held() -> dict | None:
            row = client.get(f"/api/v1/tasks/{task['id']}").get_json()
            return row if row.get("waiting_for") == {"queue_paused": QUEUE} else None

        row = poll(held, timeout=30, what="the worker to hold the task")
        assert (row["status"], row["started_at"], row["concurrency"]["slot"]) == ("WAITING", None, None)
        held_rows = db.run(
            lambda c: c.scalar(
                sa.select(sa.func.count()).where(
                    task_model.tasks.c.concurrency_key == row["concurrency"]["key"],
                    task_model.tasks.c.concurrency_slot.is_not(None),
                )
            )
        )
        assert held_rows == 0  # its slot is free while it waits
    poll(
        lambda: client.get(f"/api/v1/tasks/{task['id']}?wait=5").get_json()["status"] == "COMPLETED",
        timeout=30,
        what="the task to run once resumed",
    )


def test_the_pause_survives_a_restart_and_a_stranded_task_is_released_by_the_sweep(unserved, stack):
    client, tasker = unserved.test_client(), unserved.extensions["tasker"]
    with paused(client):
        task = submit(client, "sum", {"a": 1, "b": 2})
        assert task["status"] == "WAITING"
        restarted = build_app({**stack.env, **stack.new_broker()})
        try:
            queues = restarted.test_client().get("/api/v1/queues").get_json()["queues"]
            assert next(q for q in queues if q["name"] == QUEUE)["paused"] is True
        finally:
            restarted.extensions["tasker"].db.dispose()
        # Resumed by a process that had not seen this task held yet (its row written after the
        # resume read the held ones): the pause's row is gone, the task is still held.
        tasker.db.run(lambda c: c.execute(task_model.paused_queues.delete()))
        assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["status"] == "WAITING"
        assert tasker.recovery.sweep()["released"] >= 1
        assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["status"] == "PENDING"


def test_pausing_needs_an_admin_key_and_a_queue_that_exists(stack_env, unserved):
    answer = unserved.test_client().post("/api/v1/queues/nope/pause")
    assert answer.status_code == 404
    rule = "No task type uses it; the queues are: default, external_api."
    assert answer.get_json()["details"]["queue"] == [rule]
    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    keys, client = app.extensions["tasker"].keys, app.test_client()
    tag = uuid.uuid4().hex[:6]
    user = {"X-API-Key": keys.create(f"user-{tag}")[1]}
    admin = {"X-API-Key": keys.create(f"admin-{tag}", admin=True)[1]}
    try:
        refused = client.post(f"/api/v1/queues/{QUEUE}/pause", headers=user)
        assert refused.status_code == 403 and "needs an admin key" in refused.get_json()["error"]
        done = client.post(f"/api/v1/queues/{QUEUE}/pause", headers=admin)
        assert done.status_code == 200 and done.get_json()["paused_by"] == f"admin-{tag}"
        metrics = client.get("/metrics").get_data(as_text=True)
        assert f'tasker_queue_paused{{queue="{QUEUE}"}} 1.0' in metrics
        assert client.post(f"/api/v1/queues/{QUEUE}/resume", headers=user).status_code == 403
    finally:
        client.post(f"/api/v1/queues/{QUEUE}/resume", headers=admin)
        app.extensions["tasker"].db.dispose()


def test_a_workflow_waits_out_the_pause_and_then_runs_every_step_once(client, worker):
    """Its steps are held as the worker takes them (a map's items too); no repair counts them."""
    body = {
        "name": "paused",
        "input": {"numbers": [1, 2, 3, 4]},
        "steps": [
            {
                "id": "each",
                "task": "sum",
                "map": {"over": {"$input": "/numbers"}, "max_parallel": 2},
                "parameters": {"a": {"$item": ""}, "b": 1},
            },
            {"id": "total", "task": "sum", "after": ["each"], "parameters": {"a": 1, "b": 1}},
        ],
    }
    with paused(client):
        answer = client.post("/api/v1/workflows", json=body)
        assert answer.status_code == 202, answer.get_json()
        workflow = answer.get_json()
        tasks_url = f"/api/v1/tasks?workflow_id={workflow['id']}&limit=100"

        def two_held() -> list[dict] | None:
            held = [t for t in client.get(tasks_url).get_json()["tasks"] if t.get("waiting_for")]
            return held if len(held) == 2 else None

        held = poll(two_held, timeout=30, what="the first two items to be held")
        assert {t["step"] for t in held} == {"each[0]", "each[1]"}
        assert all(t["started_at"] is None for t in client.get(tasks_url).get_json()["tasks"])
    done = client.get(f"/api/v1/workflows/{workflow['id']}?wait=20").get_json()
    poll(
        lambda: client.get(f"/api/v1/workflows/{workflow['id']}?wait=5").get_json()["status"] == "COMPLETED",
        timeout=60,
        what=f"the workflow to complete ({done['status']})",
    )
    steps = client.get(tasks_url).get_json()["tasks"]
    assert len(steps) == 6 and all(t["status"] == "COMPLETED" for t in steps)  # the map's own row too
    assert all(t["attempts"] == 1 for t in steps if t["step"] != "each")  # each item and step ran once
