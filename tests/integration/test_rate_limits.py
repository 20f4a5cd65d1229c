"""Named rate limits on every stack (app/core/rate_limits.py): a limit set with PUT paces the runs
of the types that consume it across every worker (tests/effects.py's `paced` consumes
`effects-pace`); a task whose turn is later waits WAITING with no message and is published by
beat when its turn comes; the built-ins consume `openai` and `openweather`; bad input is a 400."""

from __future__ import annotations

import os
import uuid
from datetime import datetime

import pytest

from tests.conftest import build_app
from tests.support import poll

pytestmark = pytest.mark.integration

LIMIT = "effects-pace"


def starts_of(client, ids: list[str], timeout: float) -> list[float]:
    """Once every task has COMPLETED: their start times, in seconds, sorted."""

    def done() -> list[dict] | None:
        tasks = [client.get(f"/api/v1/tasks/{task_id}").get_json() for task_id in ids]
        return tasks if all(t["status"] == "COMPLETED" for t in tasks) else None

    tasks = poll(done, timeout=timeout, interval=0.2, what="the paced tasks to complete")
    assert all(t["attempts"] == 1 for t in tasks)
    return sorted(datetime.fromisoformat(t["started_at"]).timestamp() for t in tasks)


def most_in_a_second(starts: list[float]) -> int:
    return max(sum(1 for other in starts if start <= other < start + 1.0) for start in starts)


@pytest.fixture
def limit(client):
    """`effects-pace` removed after the test, whatever it set."""
    yield LIMIT
    client.delete(f"/api/v1/limits/{LIMIT}")


def test_a_rate_limit_paces_the_runs_and_the_rest_wait_without_a_message(client, worker, beat, limit):
    answer = client.put(f"/api/v1/limits/{limit}", json={"rate": "5/second", "burst": 2})
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"name": limit, "rate": "5/second", "burst": 2}
    ids = [
        client.post("/api/v1/tasks", json={"name": "paced", "parameters": {"n": n}}).get_json()["id"]
        for n in range(15)
    ]

    def one_waits() -> dict | None:
        for task_id in ids:
            task = client.get(f"/api/v1/tasks/{task_id}").get_json()
            if task["status"] == "WAITING":
                return task
        return None

    waiting = poll(one_waits, timeout=20, what="a task to wait for its turn")
    assert waiting["waiting_for"]["rate_limit"] == limit and waiting["started_at"] is None
    listed = client.get("/api/v1/limits").get_json()["rate_limits"]
    assert [(r["name"], r["rate"], r["burst"]) for r in listed if r["name"] == limit] == [
        (limit, "5/second", 2)
    ]
    starts = starts_of(client, ids, timeout=60)
    assert most_in_a_second(starts) <= 5 + 2, starts
    assert starts[-1] - starts[0] >= (15 - 2) / 5 - 0.5  # 13 tokens at 5 a second, less a tick's slack


def test_the_built_ins_consume_their_upstreams_limits_and_bad_limits_are_refused(client, stack_env):
    types = {t["name"]: t for t in client.get("/api/v1/task-types").get_json()["task_types"]}
    assert types["query_chatgpt"]["limits"] == ["openai"] and types["weather"]["limits"] == ["openweather"]
    assert types["paced"]["limits"] == [LIMIT] and types["sum_two_numbers"]["limits"] == []
    cases = [
        ({"rate": "10/fortnight"}, "rate"),
        ({"rate": "0/second"}, "rate"),
        ({"rate": "10/second", "burst": 0}, "burst"),
        ({"rate": "10/second", "tokens": 3}, "tokens"),
        ({}, "rate"),
    ]
    for body, field in cases:
        answer = client.put("/api/v1/limits/bad-one", json=body)
        assert answer.status_code == 400 and field in answer.get_json()["details"], (body, answer.get_json())
    answer = client.put("/api/v1/limits/-no", json={"rate": "1/second"})
    assert answer.status_code == 400 and "name" in answer.get_json()["details"]
    assert client.delete("/api/v1/limits/never-set").status_code == 404
    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    try:
        user = {"X-API-Key": app.extensions["tasker"].keys.create(f"user-{uuid.uuid4().hex[:6]}")[1]}
        refused = app.test_client().put(f"/api/v1/limits/{LIMIT}", json={"rate": "1/second"}, headers=user)
        assert refused.status_code == 403 and "needs an admin key" in refused.get_json()["error"]
    finally:
        app.extensions["tasker"].db.dispose()


def test_ten_a_second_with_a_burst_of_ten_over_three_workers(
    client, worker, beat, start_worker, stack, limit
):
    """The issue's bounds: 10/s, burst 10, three workers: no 1 s window over 10 + burst, the average
    at most 10/s plus burst over the run. TASKER_RATE_SECONDS=30 for the issue's size (310 tasks);
    CI runs 5 s (60). The throughput is bench/rate_limits.py's."""
    seconds = int(os.environ.get("TASKER_RATE_SECONDS", "5"))
    count = 10 + 10 * seconds
    for n in range(2):  # the session's worker and two more
        start_worker(stack.env, name=f"paced-{n}-{stack.name}")
    answer = client.put(f"/api/v1/limits/{limit}", json={"rate": "10/second", "burst": 10})
    assert answer.status_code == 200
    bulk = {"tasks": [{"name": "paced", "parameters": {"n": n}} for n in range(count)]}
    results = client.post("/api/v1/tasks/bulk", json=bulk).get_json()["results"]
    starts = starts_of(client, [r["id"] for r in results], timeout=seconds + 60)
    span = starts[-1] - starts[0]
    most = most_in_a_second(starts)
    print(f"rate: {count} tasks over {span:.2f} s: {count / span:.2f}/s, at most {most} in a second")
    assert most <= 10 + 10, starts
    assert count / span <= 10 + 10 / span + 0.5, (count, span)  # the average, less a tick's slack
