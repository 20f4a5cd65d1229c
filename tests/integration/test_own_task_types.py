"""Task types of one's own: the example package (examples/mytasks, TASKER_TASK_MODULES=mytasks in
every stack's environment) through everything a built-in type has, on all three stacks."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import mytasks

from app.models.migrate import upgrade
from tests.conftest import build_app, openai_env
from tests.support import kill_family, poll, row_of


def submit(client, name: str, parameters: dict, **options) -> dict:
    response = client.post("/api/v1/tasks", json={"name": name, "parameters": parameters} | options)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def finished(client, task_id: str, timeout: float = 30.0) -> dict:
    def terminal() -> dict | None:
        task = client.get(f"/api/v1/tasks/{task_id}?wait=5").get_json()
        return task if task["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return poll(terminal, timeout=timeout, what=f"task {task_id} to finish")


def test_a_type_from_hints_alone_runs_and_checks_its_parameters(client, worker):
    task = finished(client, submit(client, "add_tax", {"amount": 100})["id"])
    assert (task["status"], task["result"]) == ("COMPLETED", 120.0)
    assert finished(client, submit(client, "add_tax", {"amount": 10, "rate": 0.5})["id"])["result"] == 15.0

    for parameters, field in (
        ({"amount": "100"}, "amount"),
        ({}, "amount"),
        ({"amount": 1, "tip": 2}, "tip"),
    ):
        response = client.post("/api/v1/tasks", json={"name": "add_tax", "parameters": parameters})
        assert response.status_code == 400, response.get_json()
        assert field in response.get_json()["details"]["parameters"]


def test_progress_and_cancel_reach_a_users_function(client, worker, db):
    task = submit(client, "count_items", {"items": 2000, "step_seconds": 0.01})
    poll(lambda: (row_of(db, task["id"]).progress or 0) > 0, what="progress from count_items")
    response = client.post(f"/api/v1/tasks/{task['id']}/cancel")
    assert response.status_code in (200, 202), response.get_json()
    ended = finished(client, task["id"])
    assert ended["status"] == "CANCELLED"
    assert 0 < ended["progress"] < 100 and ended["progress_message"].endswith("of 2000")

    done = finished(client, submit(client, "count_items", {"items": 5, "step_seconds": 0})["id"])
    assert (done["status"], done["result"], done["progress"]) == ("COMPLETED", {"counted": 5}, 100)


def test_a_transient_error_is_retried_under_the_declared_policy(client, worker):
    task = finished(client, submit(client, "flaky_lookup", {"key": "k", "failures": 2})["id"])
    assert (task["status"], task["result"], task["attempts"]) == ("COMPLETED", {"key": "k", "attempts": 3}, 3)

    # More failures than the policy's three retries: FAILED, saying so.
    task = finished(client, submit(client, "flaky_lookup", {"key": "k", "failures": 9})["id"])
    assert task["status"] == "FAILED" and task["error"].endswith("(gave up after 4 attempts)")
    # A retry policy at submit replaces the declared one.
    policy = {"max_retries": 0, "on": "transient"}
    task = finished(client, submit(client, "flaky_lookup", {"key": "k"}, retry_policy=policy)["id"])
    assert task["status"] == "FAILED" and task["error"].endswith("(gave up after 1 attempts)")


def test_the_catalogue_openapi_and_idempotency_know_them(client, worker):
    types = {t["name"]: t for t in client.get("/api/v1/task-types").get_json()["task_types"]}
    add_tax = types["add_tax"]
    assert (add_tax["module"], add_tax["queue"], add_tax["description"]) == (
        "mytasks",
        "default",
        "Add tax to an amount: amount * (1 + rate), to the cent.",
    )
    assert add_tax["parameters"]["required"] == ["amount"]
    assert add_tax["parameters"]["properties"]["rate"]["default"] == 0.2
    assert types["count_items"]["time_limit"] == 600 and types["count_items"]["soft_time_limit"] == 400
    assert types["flaky_lookup"]["retry_policy"] == {"max_retries": 3, "on": "transient"}

    def served() -> dict | None:
        listed = {t["name"]: t for t in client.get("/api/v1/task-types").get_json()["task_types"]}
        return listed if listed["add_tax"]["workers"] else None

    assert poll(served, what="the worker's heartbeat naming add_tax")["count_items"]["workers"] >= 1

    document = client.get("/openapi.json").get_json()
    branches = document["paths"]["/api/v1/tasks"]["post"]["requestBody"]["content"]["application/json"]
    titles = [branch["title"] for branch in branches["schema"]["oneOf"]]
    assert {"add_tax", "count_items", "flaky_lookup"} <= set(titles)

    key = {"Idempotency-Key": f"tax-{uuid.uuid4()}"}
    body = {"name": "add_tax", "parameters": {"amount": 1}}
    first = client.post("/api/v1/tasks", json=body, headers=key)
    again = client.post("/api/v1/tasks", json=body, headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.get_json()["id"] == again.get_json()["id"]


def test_delay_from_python_submits_through_the_record(app, worker):
    with app.app_context():
        handle = mytasks.add_tax.delay(amount=50, rate=0.1)
        assert handle.get(timeout=30) == 55.0
        assert handle.info()["name"] == "add_tax" and handle.info()["owner"] == "default"
        positional = mytasks.add_tax.delay(200)
        assert positional.get(timeout=30) == 240.0


def test_a_schedule_of_a_users_type_makes_tasks_that_run(app, client, db, worker):
    body = {"name": f"tax-{uuid.uuid4().hex[:8]}", "task": "add_tax", "cron": "* * * * *"}
    refused = client.post("/api/v1/schedules", json=body | {"parameters": {"amount": "x"}})
    assert refused.status_code == 400 and "amount" in refused.get_json()["details"]["parameters"]
    response = client.post("/api/v1/schedules", json=body | {"parameters": {"amount": 10}})
    assert response.status_code == 201, response.get_json()
    schedule = response.get_json()
    try:
        due = datetime.fromisoformat(schedule["next_run_at"]) + timedelta(seconds=1)
        scheduler = app.extensions["tasker"].scheduler
        assert poll(lambda: scheduler.run_due(due), what="the scheduler's lock")["fired"] == 1
        listed = client.get(f"/api/v1/tasks?schedule_id={schedule['id']}").get_json()["tasks"]
        assert len(listed) == 1
        assert finished(client, listed[0]["id"])["result"] == 12.0
    finally:
        client.delete(f"/api/v1/schedules/{schedule['id']}")


def test_a_submit_says_when_no_live_worker_serves_its_type(openai_server, tmp_path):
    env = openai_env(openai_server) | {"TASKER_DATA_DIR": str(tmp_path)}
    app = build_app(env)
    upgrade(app.extensions["tasker"].db.engine)
    try:
        client = app.test_client()
        response = client.post("/api/v1/tasks", json={"name": "add_tax", "parameters": {"amount": 1}})
        assert response.status_code == 202, response.get_json()
        assert response.get_json()["warnings"] == [
            "No live worker serves add_tax: the task waits in its queue until a worker that loads its "
            "module (TASKER_TASK_MODULES) is started."
        ]
        types = client.get("/api/v1/task-types").get_json()["task_types"]
        assert {t["name"]: t["workers"] for t in types}["add_tax"] == 0
    finally:
        app.extensions["tasker"].db.dispose()


def test_a_worker_without_the_module_shows_in_the_catalogue(client, stack, start_worker, worker):
    """A worker started without TASKER_TASK_MODULES (on a broker of its own, so it takes no message
    of the others'): it serves Tasker's types and not the example's, and the catalogue says so."""
    env = {**stack.env, **stack.new_broker(), "TASKER_TASK_MODULES": ""}
    bare = start_worker(env, concurrency=1, name=f"bare-{stack.name}")
    try:

        def counts() -> dict | None:
            listed = {
                t["name"]: t["workers"] for t in client.get("/api/v1/task-types").get_json()["task_types"]
            }
            return listed if listed["sum_two_numbers"] == listed["add_tax"] + 1 else None

        poll(counts, timeout=30, what="the bare worker's heartbeat")
        said = bare.log_path.read_text()
        served = ["find_longest_consecutive_letters", "http_request", "process_data", "query_chatgpt",
                  "start_workflow", "sum_two_numbers", "weather"]  # fmt: skip
        [line] = [
            line for line in said.splitlines() if "serving task types:" in line and "default" not in line
        ]
        assert line.split("serving task types: ")[1].startswith(", ".join(served)), line
    finally:
        kill_family(bare)
