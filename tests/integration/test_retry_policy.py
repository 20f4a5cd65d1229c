"""A retry policy per submission: {"max_retries": n, "on": "any" | "transient"}, exponential backoff,
on real workers; the task type's policy when a submit gives none."""

from __future__ import annotations

import pytest

from tests.integration import test_query_chatgpt as chatgpt
from tests.integration import test_weather as weather
from tests.support import TERMINAL, poll

FAILING = {"name": "process_data", "parameters": {"duration_seconds": 0.05, "fail_at_percent": 0}}


def run(client, body, timeout: float = 30.0) -> dict:
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 202, response.get_json()
    task_id = response.get_json()["id"]

    def finished():
        task = client.get(f"/api/v1/tasks/{task_id}").get_json()
        return task if task["status"] in TERMINAL else None

    return poll(finished, timeout, what=f"task {task_id} to finish")


@pytest.mark.parametrize(
    ("policy", "attempts"),
    [
        (None, 1),
        ({"max_retries": 2}, 3),
        ({"max_retries": 2, "on": "any"}, 3),
        ({"max_retries": 2, "on": "transient"}, 1),
    ],
)
def test_any_failure_is_retried_up_to_max_retries_only_under_any(client, worker, policy, attempts):
    body = FAILING | ({"retry_policy": policy} if policy is not None else {})
    task = run(client, body)
    assert task["status"] == "FAILED"
    assert task["attempts"] == attempts
    assert "Failed on purpose" in task["error"]
    # What was given is shown, with the default filled in (any); null when none was given.
    assert task["retry_policy"] == (None if policy is None else {"on": "any"} | policy)


def test_a_failure_then_a_success_completes_on_the_retry(client, worker, openai):
    """A 400 from the upstream is not transient: the type's policy gives up at once, a policy of
    `any` runs it again and the second answer completes it."""
    steps = ((400, chatgpt.upstream_error("bad request")), (200, chatgpt.reply("Second time lucky.")))
    chatgpt.serve(openai, *steps)
    body = {"name": "query_chatgpt", "parameters": {"prompt": "hello"}}
    first = run(client, body)
    assert (first["status"], first["attempts"]) == ("FAILED", 1)
    openai.clear()
    script = chatgpt.serve(openai, *steps)
    task = run(client, body | {"retry_policy": {"max_retries": 1, "on": "any"}})
    assert (task["status"], task["attempts"], task["result"]) == ("COMPLETED", 2, "Second time lucky.")
    assert len(script.calls) == 2


def test_a_policy_replaces_the_task_types_retries(client, worker, openai):
    """weather retries upstream 5xx three times by default; a policy of 0 retries gives up at once."""
    script = weather.serve(openai, (503, {}, {}))
    policy = {"max_retries": 0, "on": "transient"}
    task = run(client, {"name": "weather", "parameters": {"city": "London"}, "retry_policy": policy})
    assert (task["status"], task["attempts"]) == ("FAILED", 1)
    assert "gave up after 1 attempts" in task["error"]
    assert len(script.calls) == 1


def test_retrying_a_task_keeps_its_policy_and_a_replay_with_another_is_a_conflict(client, worker):
    task = run(client, FAILING | {"retry_policy": {"max_retries": 1}})
    again = client.post(f"/api/v1/tasks/{task['id']}/retry").get_json()
    assert again["retry_policy"] == {"max_retries": 1, "on": "any"}
    headers = {"Idempotency-Key": f"policy-{task['id']}"}
    body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "retry_policy": {"max_retries": 1}}
    assert client.post("/api/v1/tasks", json=body, headers=headers).status_code == 202
    assert client.post("/api/v1/tasks", json=body, headers=headers).status_code == 200
    other = body | {"retry_policy": {"max_retries": 2}}
    assert client.post("/api/v1/tasks", json=other, headers=headers).status_code == 409


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"max_retries": 11}, "max_retries"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": "3"}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"on": "sometimes"}, "on"),
        ({"on": None}, "on"),
        ({"max_retries": 1, "backoff": 2}, "backoff"),
    ],
)
def test_a_bad_retry_policy_is_a_400_naming_the_field(client, policy, field):
    response = client.post(
        "/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}, "retry_policy": policy}
    )
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["details"]["retry_policy"], response.get_json()
    not_object = client.post("/api/v1/tasks", json={"name": "sum", "parameters": {}, "retry_policy": [1]})
    assert not_object.status_code == 400 and "retry_policy" in not_object.get_json()["details"]


def test_the_catalog_shows_each_types_policy_and_the_settings_change_it(stack):
    from tests.conftest import build_app

    types = {
        t["name"]: t
        for t in build_app(stack.env).test_client().get("/api/v1/task-types").get_json()["task_types"]
    }
    assert types["weather"]["retry_policy"] == {"max_retries": 3, "on": "transient"}
    assert types["sum_two_numbers"]["retry_policy"] == {"max_retries": 0, "on": "transient"}
    assert (types["sum_two_numbers"]["time_limit"], types["sum_two_numbers"]["soft_time_limit"]) == (45, 30)
    env = stack.env | {"MAX_RETRY_ATTEMPTS": "5", "DEFAULT_TASK_TIMEOUT": "12"}
    app = build_app(env)
    types = {t["name"]: t for t in app.test_client().get("/api/v1/task-types").get_json()["task_types"]}
    assert types["weather"]["retry_policy"] == {"max_retries": 5, "on": "transient"}
    assert (types["sum_two_numbers"]["time_limit"], types["sum_two_numbers"]["soft_time_limit"]) == (12, 8)
    assert types["process_data"]["time_limit"] == 3760  # a type with limits of its own keeps them
    # A retry_policy without max_retries takes MAX_RETRY_ATTEMPTS.
    made = app.test_client().post(
        "/api/v1/tasks",
        json={"name": "sum", "parameters": {"a": 1, "b": 2}, "retry_policy": {}, "countdown": 3600},
    )
    assert made.get_json()["retry_policy"] == {"max_retries": 5, "on": "any"}
    app.extensions["tasker"].db.dispose()
