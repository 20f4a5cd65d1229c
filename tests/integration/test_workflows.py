"""Workflows on every stack: steps that are tasks, released as their parents end (in the same
transaction as the parent's terminal write), references resolved by JSON Pointer, fail_fast and
continue, all_done joins, cancel, and definitions refused whole with the field named."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.models import task as task_model
from tests.conftest import build_app
from tests.support import poll

pytestmark = pytest.mark.integration

TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def start(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/workflows", json=body)
    assert response.status_code == 202, response.get_json()
    assert response.headers["Location"] == f"/api/v1/workflows/{response.get_json()['id']}"
    return response.get_json()


def ended(client: Any, workflow_id: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        workflow = client.get(f"/api/v1/workflows/{workflow_id}").get_json()
        return workflow if workflow["status"] != "RUNNING" else None

    return poll(done, timeout=timeout, interval=0.1, what=f"workflow {workflow_id} to end")


def by_step(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in workflow["steps"]}


def diamond(x: int) -> dict[str, Any]:
    return {
        "name": "diamond",
        "input": {"x": x},
        "steps": [
            {"id": "a", "task": "sum", "parameters": {"a": {"$input": "/x"}, "b": 1}},
            {"id": "b", "task": "sum", "after": ["a"], "parameters": {"a": {"$step": "a"}, "b": 10}},
            {"id": "c", "task": "sum", "after": ["a"], "parameters": {"a": {"$step": "a"}, "b": 100}},
            {
                "id": "d",
                "task": "sum",
                "after": ["b", "c"],
                "parameters": {"a": {"$step": "b"}, "b": {"$step": "c"}},
            },
        ],
    }


def test_a_diamond_runs_each_step_once_with_its_parents_results(client, worker):
    started = start(client, diamond(2))
    steps = by_step(started)
    assert started["status"] == "RUNNING" and steps["a"]["status"] == "PENDING"
    assert steps["d"]["status"] == "WAITING" and steps["d"]["waiting_for"] == ["b", "c"]
    workflow = ended(client, started["id"])
    steps = by_step(workflow)
    assert workflow["status"] == "COMPLETED" and workflow["completed_at"] is not None
    assert {k: s["result"] for k, s in steps.items()} == {"a": 3, "b": 13, "c": 103, "d": 116}
    assert {s["attempts"] for s in steps.values()} == {1}
    task = client.get(f"/api/v1/tasks/{steps['d']['task_id']}").get_json()  # a step is a task
    assert (task["status"], task["parameters"]) == ("COMPLETED", {"a": 13, "b": 103})
    mine = client.get(f"/api/v1/tasks?workflow_id={started['id']}").get_json()["tasks"]
    assert sorted(t["id"] for t in mine) == sorted(s["task_id"] for s in steps.values())
    listed = client.get("/api/v1/workflows?name=diamond&status=COMPLETED").get_json()["workflows"]
    assert started["id"] in [w["id"] for w in listed] and "steps" not in listed[0]


def test_parents_ending_together_release_their_child_once(client, worker):
    """Twenty diamonds at once: B and C of each end close together; every D runs exactly once."""
    with ThreadPoolExecutor(8) as pool:
        ids = [w["id"] for w in pool.map(lambda x: start(client, diamond(x)), range(20))]
    for x, workflow_id in enumerate(ids):
        workflow = ended(client, workflow_id)
        d = by_step(workflow)["d"]
        assert (workflow["status"], d["result"], d["attempts"]) == ("COMPLETED", 2 * x + 112, 1)


def failing(on_failure: str) -> dict[str, Any]:
    return {
        "name": f"failing-{on_failure}",
        "on_failure": on_failure,
        "steps": [
            {
                "id": "bad",
                "task": "process_data",
                "parameters": {"duration_seconds": 0.2, "record_count": 10, "fail_at_percent": 50},
            },
            {"id": "ok", "task": "sum", "parameters": {"a": 1, "b": 2}},
            {"id": "after_bad", "task": "sum", "after": ["bad"], "parameters": {"a": 1, "b": 2}},
            {
                "id": "report",
                "task": "sum",
                "after": ["bad", "ok"],
                "join": "all_done",
                "parameters": {
                    "a": {"$step": "ok", "path": "/result"},
                    "b": {"$step": "ok", "path": "/result"},
                },
            },
        ],
    }


def test_fail_fast_cancels_what_has_not_started(client, worker):
    workflow = ended(client, start(client, failing("fail_fast"))["id"])
    steps = by_step(workflow)
    assert workflow["status"] == "FAILED" and workflow["error"].startswith(
        "step bad failed: Failed on purpose"
    )
    assert steps["bad"]["status"] == "FAILED"
    assert steps["after_bad"]["status"] == "CANCELLED"
    assert steps["after_bad"]["error"] == "upstream step bad failed"
    assert steps["report"]["status"] in ("CANCELLED",) and steps["report"]["attempts"] == 0


def test_continue_cancels_only_what_needed_the_failed_step_and_all_done_runs(client, worker):
    workflow = ended(client, start(client, failing("continue"))["id"])
    steps = by_step(workflow)
    assert workflow["status"] == "FAILED"
    assert (steps["after_bad"]["status"], steps["after_bad"]["error"]) == (
        "CANCELLED",
        "upstream step bad failed",
    )
    assert (steps["report"]["status"], steps["report"]["result"]) == (
        "COMPLETED",
        6,
    )  # its parents' {status, result}


def test_a_reference_that_names_nothing_fails_its_step_readably(client, worker):
    body = {
        "name": "missing-path",
        "on_failure": "continue",
        "steps": [
            {"id": "a", "task": "sum", "parameters": {"a": 1, "b": 2}},
            {
                "id": "b",
                "task": "sum",
                "after": ["a"],
                "parameters": {"a": {"$step": "a", "path": "/keys"}, "b": 1},
            },
        ],
    }
    steps = by_step(ended(client, start(client, body)["id"]))
    assert (steps["b"]["status"], steps["b"]["error"]) == ("FAILED", "step a's result has nothing at /keys.")


def test_cancel_ends_the_waiting_steps_and_releases_nothing_after(client, worker):
    body = {
        "name": "long",
        "steps": [
            {
                "id": "slow",
                "task": "process_data",
                "parameters": {"duration_seconds": 30, "record_count": 300},
            },
            {"id": "next", "task": "sum", "after": ["slow"], "parameters": {"a": 1, "b": 2}},
        ],
    }
    workflow = start(client, body)
    slow = by_step(workflow)["slow"]["task_id"]
    poll(
        lambda: client.get(f"/api/v1/tasks/{slow}").get_json()["status"] == "STARTED",
        timeout=30,
        what="slow to start",
    )
    answer = client.post(f"/api/v1/workflows/{workflow['id']}/cancel")
    assert answer.status_code == 200 and answer.get_json()["status"] == "CANCELLED"
    steps = by_step(answer.get_json())
    assert (steps["next"]["status"], steps["next"]["error"]) == ("CANCELLED", "its workflow was cancelled")
    poll(
        lambda: client.get(f"/api/v1/tasks/{slow}").get_json()["status"] == "CANCELLED",
        timeout=30,
        what="slow to stop",
    )
    steps = by_step(client.get(f"/api/v1/workflows/{workflow['id']}").get_json())
    assert steps["next"]["attempts"] == 0  # never released, never run
    assert client.post(f"/api/v1/workflows/{workflow['id']}/cancel").get_json()["status"] == "CANCELLED"


@pytest.mark.parametrize(
    ("steps", "field", "words"),
    [
        (
            [
                {"id": "a", "task": "sum", "after": ["c"]},
                {"id": "b", "task": "sum", "after": ["a"]},
                {"id": "c", "task": "sum", "after": ["b"]},
            ],
            "steps.0.after",
            "cycle",
        ),
        ([{"id": "a", "task": "nope"}], "steps.0.task", "Unknown task name."),
        (
            [
                {"id": "a", "task": "sum", "parameters": {"a": 1, "b": 2}},
                {"id": "b", "task": "sum", "parameters": {"a": {"$step": "a"}, "b": 1}},
            ],
            "steps.1.parameters.a",
            "comes after",
        ),
        (
            [{"id": "a", "task": "sum", "parameters": {"a": "x", "b": 2}}],
            "steps.0.parameters",
            "Must be a number",
        ),
        (
            [{"id": "a", "task": "sum", "parameters": {"a": 1, "b": 2}}, {"id": "a", "task": "sum"}],
            "steps.1.id",
            "unique",
        ),
        ([{"id": "a", "task": "sum", "after": ["zz"]}], "steps.0.after", "No step is called 'zz'"),
        (
            [{"id": "a", "task": "sum", "parameters": {"a": {"$input": "/none"}, "b": 1}}],
            "steps.0.parameters.a",
            "/none",
        ),
        ([{"id": "1a", "task": "sum"}], "steps", "Must start with a letter"),
        (
            [
                {"id": "a", "task": "sum", "parameters": {"a": 1, "b": 2}},
                {"id": "b", "task": "sum", "after": ["a", "a"]},
            ],
            "steps.1.after",
            "once",
        ),
        ([{"id": "a", "task": "sum", "parameters": {"a": "\x00", "b": 1}}], "steps.0.parameters", "NUL"),
        (
            [{"id": "a", "task": "sum", "parameters": {"a": "\ud800", "b": 1}}],
            "steps.0.parameters",
            "Unicode",
        ),
    ],
    ids=[
        "cycle",
        "unknown-type",
        "not-an-ancestor",
        "static-parameters",
        "duplicate-id",
        "unknown-parent",
        "missing-input",
        "bad-id",
        "a-parent-twice",
        "nul",
        "lone-surrogate",
    ],
)
def test_a_bad_definition_is_refused_whole_naming_the_field(client, steps, field, words):
    before = client.get("/api/v1/workflows?limit=200").get_json()["workflows"]
    answer = client.post("/api/v1/workflows", json={"name": "bad", "steps": steps})
    assert answer.status_code == 400, answer.get_json()
    details = answer.get_json()["details"]
    assert field in details and words in str(details[field]), details
    assert client.get("/api/v1/workflows?limit=200").get_json()["workflows"] == before  # nothing written


@pytest.fixture
def unserved(stack):
    """The stack's database with a broker of its own that no worker consumes: a step stays where
    the test puts it."""
    app = build_app({**stack.env, **stack.new_broker()})
    yield app
    app.extensions["tasker"].db.dispose()


def test_the_sweep_decides_a_step_left_waiting_with_its_parents_ended(unserved):
    """A parent whose ending skipped the release (written here behind Tasker's back): the sweep's
    repair releases the child with the parent's result and counts it; a child whose parent has not
    ended is left waiting."""
    client, tasker = unserved.test_client(), unserved.extensions["tasker"]
    body = {
        "name": "stuck",
        "steps": [
            {"id": "a", "task": "sum", "parameters": {"a": 1, "b": 2}},
            {"id": "b", "task": "sum", "after": ["a"], "parameters": {"a": {"$step": "a"}, "b": 1}},
        ],
    }
    workflow = start(client, body)
    a, b = (by_step(workflow)[key]["task_id"] for key in ("a", "b"))
    future = datetime.now(UTC) + timedelta(days=1)  # every WAITING step counts as untouched
    assert tasker.recovery.repair_waiting(future) == 0  # a has not ended: b rightly waits
    tasks = task_model.tasks
    ended = tasks.update().where(tasks.c.id == uuid.UUID(a)).values(status="COMPLETED", result=3)
    tasker.db.run(lambda conn: conn.execute(ended))
    assert tasker.recovery.repair_waiting(future) == 1
    released = client.get(f"/api/v1/tasks/{b}").get_json()
    assert (released["status"], released["parameters"]) == ("PENDING", {"a": 3, "b": 1})
    assert tasker.recovery.repair_waiting(future) == 0


def test_cancelling_a_waiting_step_cancels_what_needed_it(unserved):
    client = unserved.test_client()
    body = {
        "name": "chain",
        "on_failure": "continue",
        "steps": [
            {"id": "a", "task": "sum", "parameters": {"a": 1, "b": 2}},
            {"id": "b", "task": "sum", "after": ["a"], "parameters": {"a": 1, "b": 2}},
            {"id": "c", "task": "sum", "after": ["b"], "parameters": {"a": 1, "b": 2}},
        ],
    }
    workflow = start(client, body)
    answer = client.post(f"/api/v1/tasks/{by_step(workflow)['b']['task_id']}/cancel")
    assert answer.status_code == 200 and answer.get_json()["status"] == "CANCELLED"
    steps = by_step(client.get(f"/api/v1/workflows/{workflow['id']}").get_json())
    assert (steps["c"]["status"], steps["c"]["error"]) == ("CANCELLED", "upstream step b was cancelled")
    assert steps["a"]["status"] == "PENDING"  # not its business
