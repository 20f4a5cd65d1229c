"""Priorities: on Redis a high task overtakes queued low ones; everywhere the priority is recorded."""

from __future__ import annotations

import pytest

from tests.conftest import build_app
from tests.support import kill_family, poll, row_of

PRIORITY_NAMES = [("low", 0), ("normal", 5), ("high", 9), (0, 0), (7, 7)]


@pytest.mark.parametrize(("given", "stored"), PRIORITY_NAMES)
def test_priority_is_recorded(client, given, stored):
    response = client.post(
        "/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 1}, "priority": given}
    )
    assert response.status_code == 202 and response.get_json()["priority"] == stored


@pytest.mark.parametrize("given", ["urgent", 10, -1, 1.5, True, None])
def test_a_bad_priority_is_400(client, given):
    response = client.post(
        "/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 1}, "priority": given}
    )
    assert response.status_code == 400 and "priority" in response.get_json()["error"]


def test_a_high_task_runs_before_queued_low_ones(stack, start_worker, db):
    if stack.embedded:
        pytest.skip("the filesystem transport has no priorities; it takes tasks in order")
    env = {**stack.env, **stack.new_broker()}
    app = build_app(env)
    client = app.test_client()

    def submit(priority):
        body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "priority": priority}
        return client.post("/api/v1/tasks", json=body).get_json()["id"]

    low = [submit("low") for _ in range(30)]
    high = submit("high")
    worker = start_worker(env, concurrency=1, name="priority")  # one process: one task at a time
    try:
        poll(lambda: all(row_of(db, t).status == "COMPLETED" for t in [*low, high]), timeout=60)
    finally:
        kill_family(worker)
    finished = sorted([*low, high], key=lambda t: row_of(db, t).completed_at)
    assert finished.index(high) <= 5, "the high task waited behind more than 5 low ones"
    app.extensions["tasker"].db.dispose()
