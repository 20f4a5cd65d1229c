"""Workflows on every stack: steps that are tasks, released as their parents end (in the same
transaction as the parent's terminal write), references resolved by JSON Pointer, fail_fast and
continue, all_done joins, cancel, and definitions refused whole with the field named."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
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
        (
            [{"id": "a", "task": "sum", "map": {"over": {"$input": "/n"}, "max_items": 1001}}],
            "steps.0.map.max_items",
            "At most 1000 (WORKFLOW_MAX_ITEMS)",
        ),
        (
            [{"id": "a", "task": "sum", "map": {"over": {"$input": "/n"}}, "parameters": {"a": "x", "b": 1}}],
            "steps.0.parameters",
            "Must be a number",
        ),
        (
            [{"id": "a", "task": "sum", "parameters": {"a": {"$item": ""}, "b": 1}}],
            "steps.0.parameters.a",
            "map step",
        ),
        (
            [{"id": "a", "task": "sum", "map": {"over": {"a": 1}}}],
            "steps.0.map.over",
            "reference to an array",
        ),
        (
            [{"id": "a", "task": "sum", "map": {"over": {"$input": "/one"}}}],
            "steps.0.map.over",
            "got a number",
        ),
        (
            [{"id": "a", "task": "grouped", "parameters": {"group": "g"}}],
            "steps.0.task",
            "grouped declares a concurrency key, which a workflow's steps do not take yet",
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
        "map-over-the-cap",
        "map-item-parameters",
        "item-outside-a-map",
        "map-over-no-reference",
        "map-over-no-array",
        "a-keyed-type",
    ],
)
def test_a_bad_definition_is_refused_whole_naming_the_field(client, steps, field, words):
    before = client.get("/api/v1/workflows?limit=200").get_json()["workflows"]
    body = {"name": "bad", "input": {"n": [1, 2], "one": 1}, "steps": steps}
    answer = client.post("/api/v1/workflows", json=body)
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


def thumbnails(count: int, **fan_out: Any) -> dict[str, Any]:
    """docs/workflows.md's example: list the objects, resize each, report on them all."""
    steps = [
        {"id": "list", "task": "list_objects", "parameters": {"bucket": "photos", "count": count}},
        {
            "id": "resize",
            "task": "resize_image",
            "after": ["list"],
            "map": {"over": {"$step": "list", "path": "/keys"}, **fan_out},
            "parameters": {"key": {"$item": ""}, "width": 256},
        },
        {
            "id": "report",
            "task": "summarize",
            "after": ["resize"],
            "join": "all_done",
            "parameters": {"results": {"$step": "resize", "path": "/result"}},
        },
    ]
    return {"name": "thumbnails", "on_failure": "continue", "steps": steps}


def test_a_map_runs_one_task_per_item_in_order_and_its_result_is_their_results(client, worker):
    workflow = ended(client, start(client, thumbnails(12, max_parallel=3))["id"])
    steps = by_step(workflow)
    assert workflow["status"] == "COMPLETED", workflow
    keys = [f"{index:03}.jpg" for index in range(12)]
    assert steps["resize"]["result"] == [{"key": key, "thumbnail": f"thumbs/256/{key}"} for key in keys]
    assert steps["resize"]["map"]["items"] == {
        "total": 12, "completed": 12, "failed": 0, "cancelled": 0, "running": 0, "waiting": 0,
    }  # fmt: skip
    assert steps["report"]["result"] == {"images": 12, "thumbnails": 12}
    listed = client.get(f"/api/v1/tasks?workflow_id={workflow['id']}&limit=100").get_json()["tasks"]
    items = [task for task in listed if task["name"] == "resize_image"]
    items = [task for task in items if task["id"] != steps["resize"]["task_id"]]
    assert sorted(task["parameters"]["key"] for task in items) == keys
    assert all(task["attempts"] == 1 for task in items)
    # max_parallel 3: at no item's start were more than three items started and not completed
    spans = sorted((task["started_at"], task["completed_at"]) for task in items)
    assert max(sum(1 for s, e in spans if s <= begun < e) for begun, _ in spans) <= 3


def squares(numbers: list[Any], **extra: Any) -> dict[str, Any]:
    step = {"id": "add", "task": "sum", "parameters": {"a": {"$item": ""}, "b": 10}}
    return {
        "name": "squares",
        "input": {"numbers": numbers},
        "steps": [{**step, "map": {"over": {"$input": "/numbers"}, **extra}}],
    }


def test_a_map_over_the_input_expands_at_submit_and_an_empty_one_completes_at_once(client, worker):
    started = start(client, squares([1, 2, 3]))
    assert by_step(started)["add"]["map"]["items"]["total"] == 3
    assert by_step(ended(client, started["id"]))["add"]["result"] == [11, 12, 13]
    empty = start(client, squares([]))
    assert (empty["status"], by_step(empty)["add"]["result"]) == ("COMPLETED", [])


def test_a_map_over_something_not_an_array_fails_its_step_readably(client, worker):
    body = thumbnails(2)
    body["steps"][1]["map"]["over"] = {"$step": "list"}  # the whole result: an object
    resize = by_step(ended(client, start(client, body)["id"]))["resize"]
    assert (resize["status"], resize["error"]) == (
        "FAILED",
        "map over the whole value: expected an array, got an object.",
    )
    too_many = ended(client, start(client, thumbnails(5, max_items=4))["id"])
    assert by_step(too_many)["resize"]["error"] == "map over /keys: 5 items, more than max_items (4)."


def test_a_failed_item_fails_the_map_and_an_all_done_join_still_reports(client, worker):
    body = thumbnails(4)
    body["input"] = {"fail": [False, False, True, False]}
    body["steps"][0]["parameters"]["count"] = 4
    body["steps"][1]["map"]["over"] = {"$input": "/fail"}
    body["steps"][1]["parameters"] = {"key": "k", "fail": {"$item": ""}}
    workflow = ended(client, start(client, body)["id"])
    steps = by_step(workflow)
    assert workflow["status"] == "FAILED"
    assert steps["resize"]["status"] == "FAILED"
    assert steps["resize"]["error"] == "1 of 4 items failed; resize[2]: ValueError: cannot read k"
    assert steps["resize"]["result"][2] is None and steps["resize"]["result"][3]["key"] == "k"
    assert steps["report"]["result"] == {"images": 4, "thumbnails": 3}, str(steps["report"])


def test_cancel_with_a_map_half_done_starts_nothing_after_and_the_join_never_runs(client, worker):
    body = {
        "name": "half",
        "input": {"sizes": [4] * 4 + [400] * 6},  # the later items outlast any wait for the cancel
        "steps": [
            {
                "id": "count",
                "task": "count_items",
                "map": {"over": {"$input": "/sizes"}, "max_parallel": 2},
                "parameters": {"items": {"$item": ""}, "step_seconds": 0.05},
            },
            {
                "id": "join",
                "task": "summarize",
                "after": ["count"],
                "parameters": {"results": {"$step": "count"}},
            },
        ],
    }
    workflow = start(client, body)
    url = f"/api/v1/workflows/{workflow['id']}"

    def half_done() -> bool:
        return by_step(client.get(url).get_json())["count"]["map"]["items"]["completed"] >= 4

    poll(half_done, timeout=60, what="half the map done")
    cancelled = client.post(f"{url}/cancel").get_json()
    assert cancelled["status"] == "CANCELLED"
    tasks = f"/api/v1/tasks?workflow_id={workflow['id']}&limit=100"
    unstarted = {t["id"] for t in client.get(tasks).get_json()["tasks"] if t["started_at"] is None}
    assert len(unstarted) >= 3  # the join, the map's own row, and items not reached

    def all_ended() -> list[dict[str, Any]] | None:
        listed = client.get(tasks).get_json()["tasks"]
        return listed if all(t["status"] in TERMINAL for t in listed) else None

    listed = poll(all_ended, timeout=30, what="every step to end")
    assert all(t["attempts"] == 0 for t in listed if t["id"] in unstarted)  # none started after
    steps = by_step(client.get(url).get_json())
    assert steps["join"]["status"] == "CANCELLED" and steps["join"]["attempts"] == 0
    counts = steps["count"]["map"]["items"]
    assert counts["completed"] >= 4 and counts["completed"] + counts["cancelled"] == 10


def test_the_sweep_moves_a_map_on_when_an_items_ending_skipped_it(unserved):
    """Items ended behind Tasker's back: the repair releases the next item while fewer than
    max_parallel run, and ends the map with its items' results once they have all ended."""
    client, tasker = unserved.test_client(), unserved.extensions["tasker"]
    workflow = start(client, squares([1, 2, 3], max_parallel=1))
    future = datetime.now(UTC) + timedelta(days=1)
    assert tasker.recovery.repair_waiting(future) == 0  # item 0 runs (PENDING): nothing to do
    tasks = task_model.tasks
    workflow_id = uuid.UUID(workflow["id"])

    def end_item(index: int) -> None:
        item = tasks.c.step == f"add[{index}]"
        done = tasks.update().where(tasks.c.workflow_id == workflow_id, item)
        tasker.db.run(lambda conn: conn.execute(done.values(status="COMPLETED", result=index + 11)))

    end_item(0)
    assert tasker.recovery.repair_waiting(future) == 1
    statuses = {
        t["step"]: t["status"]
        for t in client.get(f"/api/v1/tasks?workflow_id={workflow_id}").get_json()["tasks"]
    }
    assert (statuses["add[1]"], statuses["add[2]"]) == ("PENDING", "WAITING")
    assert tasker.recovery.repair_waiting(future) == 0
    end_item(1)
    end_item(2)
    assert tasker.recovery.repair_waiting(future) == 1
    add = by_step(client.get(f"/api/v1/workflows/{workflow_id}").get_json())["add"]
    assert (add["status"], add["result"]) == ("COMPLETED", [11, 12, 13])


def effects(path: Any) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def fan(path: Any, count: int, **item: Any) -> dict[str, Any]:
    """list -> map x count -> join, each run counted in `path`."""
    return {
        "name": "fan",
        "on_failure": "continue",
        "steps": [
            {"id": "list", "task": "spread", "parameters": {"count": count}},
            {
                "id": "each",
                "task": "record",
                "after": ["list"],
                "map": {"over": {"$step": "list"}, "max_parallel": 5},
                "parameters": {"path": str(path), "value": {"$item": ""}, **item},
            },
            {
                "id": "join",
                "task": "total",
                "after": ["each"],
                "join": "all_done",
                "parameters": {"path": str(path), "values": {"$step": "each", "path": "/result"}},
            },
        ],
    }


def test_resume_runs_only_the_failed_item_and_what_came_after(client, worker, tmp_path):
    """Item 17 of 20 fails on purpose (while a file exists); resumed once the file is gone, only
    item 17 and the join run again, as new rows that say which they replace."""
    path, flag = tmp_path / "effects.txt", tmp_path / "broken"
    flag.touch()
    body = fan(path, 20)
    body["input"] = {"items": [{"value": n, "flag": str(flag) if n == 17 else ""} for n in range(20)]}
    body["steps"][1]["map"]["over"] = {"$input": "/items"}
    body["steps"][1]["parameters"] |= {"value": {"$item": "/value"}, "fail_while": {"$item": "/flag"}}
    workflow = ended(client, start(client, body)["id"])
    steps = by_step(workflow)
    assert workflow["status"] == "FAILED" and steps["each"]["map"]["items"]["failed"] == 1
    assert steps["join"]["result"] == sum(range(20)) - 17  # all_done: it ran without item 17
    first = effects(path)
    assert len(first) == 19 + 1
    flag.unlink()
    answer = client.post(f"/api/v1/workflows/{workflow['id']}/resume")
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["status"] == "RUNNING"
    assert client.post(f"/api/v1/workflows/{workflow['id']}/resume").status_code in (202, 409)
    resumed = ended(client, workflow["id"])
    steps = by_step(resumed)
    assert resumed["status"] == "COMPLETED", resumed
    assert steps["join"]["result"] == sum(range(20))
    again = effects(path)[len(first) :]
    tokens = sorted(line.split()[0].split("/")[1] for line in again)
    assert tokens == ["each[17]", "join"]  # only item 17 and the join ran again
    listed = client.get(f"/api/v1/tasks?workflow_id={workflow['id']}&limit=100").get_json()["tasks"]
    by_key = {t["step"]: t for t in listed if t["step"]}
    old = [t for t in listed if t["step"] is None]
    assert sorted(t["status"] for t in old) == ["COMPLETED", "FAILED", "FAILED"]  # join, item, map
    assert by_key["each[17]"]["retry_of"] in {t["id"] for t in old}
    assert steps["each"]["result"] == list(range(20))  # the kept results and the new one, in order


def test_resume_is_refused_while_the_workflow_runs_and_when_nothing_failed(client, worker, tmp_path):
    path = tmp_path / "effects.txt"
    running = start(client, fan(path, 2, seconds=1))
    answer = client.post(f"/api/v1/workflows/{running['id']}/resume")
    assert answer.status_code == 409 and "running" in answer.get_json()["error"]
    client.post(f"/api/v1/workflows/{running['id']}/cancel")
    done = ended(client, start(client, fan(path, 2))["id"])
    answer = client.post(f"/api/v1/workflows/{done['id']}/resume")
    assert answer.status_code == 409 and "Nothing to resume" in answer.get_json()["error"]
    answer = client.post(f"/api/v1/workflows/{done['id']}/resume", json={"steps": ["nope"]})
    assert answer.status_code == 400 and "steps.0" in answer.get_json()["details"]
    answer = client.post(f"/api/v1/workflows/{done['id']}/resume", json={"steps": ["each[1]"]})
    assert answer.status_code == 202
    assert by_step(ended(client, done["id"]))["join"]["result"] == 3


def test_fifty_concurrent_submits_with_one_idempotency_key_make_one_workflow(client, worker):
    key = f"thumbs-{uuid.uuid4()}"
    body = thumbnails(3)

    def submit(_: int) -> Any:
        return client.post("/api/v1/workflows", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(submit, range(50)))
    assert sorted({a.status_code for a in answers}) in ([200, 202], [202])
    assert [a.status_code for a in answers].count(202) == 1
    assert len({a.get_json()["id"] for a in answers}) == 1
    workflow_id = answers[0].get_json()["id"]
    other = client.post("/api/v1/workflows", json=thumbnails(4), headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.get_json()["details"]["workflow_id"] == workflow_id
    assert ended(client, workflow_id)["status"] == "COMPLETED"
    listed = client.get("/api/v1/workflows?name=thumbnails&limit=200").get_json()["workflows"]
    tasks = client.get(f"/api/v1/tasks?workflow_id={workflow_id}&limit=100").get_json()["tasks"]
    assert workflow_id in [w["id"] for w in listed] and len(tasks) == 3 + 3  # three steps, three items


def published(app: Any, queue: str = "default") -> Counter[str]:
    """Every message waiting in the app's broker on `queue`, taken off it: how many per task id."""
    celery = app.extensions["celery"]
    counts: Counter[str] = Counter()

    def take(body: Any, message: Any) -> None:
        counts[message.headers["id"]] += 1
        message.ack()

    with (
        celery.connection_for_read() as conn,
        conn.Consumer(celery.amqp.queues[queue], callbacks=[take], accept=["json"]),
    ):
        while True:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                return counts


def test_two_parents_ending_at_the_same_instant_release_their_child_once(unserved):
    """Diamonds A -> B, C -> D with B and C ended by two threads let go at one instant: every D
    is released, with both results, and published exactly once (TASKER_DIAMONDS, default 200)."""
    client, tasker = unserved.test_client(), unserved.extensions["tasker"]
    endings = tasker.endings
    diamonds = [
        by_step(start(client, diamond(x))) for x in range(int(os.environ.get("TASKER_DIAMONDS", "200")))
    ]
    for x, steps in enumerate(diamonds):
        endings.finish(uuid.UUID(steps["a"]["task_id"]), task_model.TaskStatus.COMPLETED, x + 1, webhook=True)

    def end(barrier: threading.Barrier, task_id: str, result: int) -> None:
        barrier.wait()
        endings.finish(uuid.UUID(task_id), task_model.TaskStatus.COMPLETED, result, webhook=True)

    with ThreadPoolExecutor(2) as pool:
        for x, steps in enumerate(diamonds):
            barrier = threading.Barrier(2)
            both = [
                pool.submit(end, barrier, steps[key]["task_id"], x + n) for key, n in (("b", 10), ("c", 100))
            ]
            for future in both:
                future.result()
    counts = published(unserved)
    d_ids = [steps["d"]["task_id"] for steps in diamonds]
    assert [counts[task_id] for task_id in d_ids] == [1] * len(diamonds)  # each D published once
    rows = {row.id: row for row in tasker.db.run(lambda c: task_model.rows(c, [uuid.UUID(i) for i in d_ids]))}
    for x, task_id in enumerate(d_ids):
        row = rows[uuid.UUID(task_id)]
        assert (row.status, row.parameters) == ("PENDING", {"a": x + 10, "b": x + 100})
    assert tasker.recovery.repair_waiting(datetime.now(UTC) + timedelta(days=1)) == 0


def test_a_running_step_stopped_by_its_workflow_says_why(client, worker):
    """fail_fast asks a running step to stop "upstream step X failed"; a cancel of the workflow,
    "its workflow was cancelled": never "at the client's request", which no client made."""
    slow = {"id": "slow", "task": "count_items", "parameters": {"items": 300, "step_seconds": 0.1}}
    body = {
        "name": "stopped",
        "steps": [
            slow,
            {"id": "wait", "task": "count_items", "parameters": {"items": 5, "step_seconds": 0.1}},
            {
                "id": "bad",
                "task": "resize_image",
                "after": ["wait"],
                "parameters": {"key": "k", "fail": True},
            },
        ],
    }
    workflow = ended(client, start(client, body)["id"])
    steps = by_step(workflow)
    assert (workflow["status"], steps["bad"]["status"]) == ("FAILED", "FAILED")
    # Running when bad failed (it starts with the workflow), unless a busy worker had not got to it.
    expected = (
        "Cancelled while running: upstream step bad failed."
        if steps["slow"]["attempts"]
        else "upstream step bad failed"
    )
    assert (steps["slow"]["status"], steps["slow"]["error"]) == ("CANCELLED", expected)
    running = start(client, {"name": "cancelled", "steps": [slow]})
    task = f"/api/v1/tasks/{by_step(running)['slow']['task_id']}"
    poll(lambda: client.get(task).get_json()["status"] == "STARTED", timeout=30, what="slow to start")
    client.post(f"/api/v1/workflows/{running['id']}/cancel")
    stopped = poll(
        lambda: (t := client.get(task).get_json())["status"] == "CANCELLED" and t,
        timeout=30,
        what="slow to stop",
    )
    assert stopped["error"] == "Cancelled while running: its workflow was cancelled."
