"""What every task may be given at submit: its own time limit (`timeout_seconds`) and tags, with
the tag filter on the list and on the event stream, and a schedule's tags on the tasks it makes."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest

from tests.integration.test_events import Stream
from tests.integration.test_events import submit as submit_at
from tests.integration.test_own_task_types import finished, submit
from tests.support import poll

pytestmark = pytest.mark.integration


def test_timeout_seconds_is_the_runs_hard_limit_at_most_its_types(client, worker):
    task = submit(client, "count_items", {"items": 3000, "step_seconds": 0.01}, timeout_seconds=3)
    assert task["timeout_seconds"] == 3
    ended = finished(client, task["id"])
    assert ended["status"] == "FAILED"
    assert ended["error"] == "The task exceeded its time limit of 2 s and was stopped."  # soft: two thirds
    assert 0 < ended["progress"] < 100

    done = finished(
        client, submit(client, "count_items", {"items": 3, "step_seconds": 0}, timeout_seconds=3)["id"]
    )
    assert done["status"] == "COMPLETED"
    assert client.get(f"/api/v1/tasks/{task['id']}").get_json()["timeout_seconds"] == 3
    assert finished(client, submit(client, "sum", {"a": 1, "b": 2})["id"])["timeout_seconds"] is None

    for name, parameters, value, rule in (
        ("add_tax", {"amount": 1}, 46, "1 to 45 (add_tax's own limit)"),
        ("count_items", {"items": 1}, 601, "1 to 600 (count_items's own limit)"),
        ("add_tax", {"amount": 1}, 0, "greater than or equal to 1"),
        ("add_tax", {"amount": 1}, 2.5, "Not a valid integer."),
        ("add_tax", {"amount": 1}, "10", "Not a valid integer."),
    ):
        body = {"name": name, "parameters": parameters, "timeout_seconds": value}
        response = client.post("/api/v1/tasks", json=body)
        assert response.status_code == 400, response.get_json()
        assert rule in " ".join(response.get_json()["details"]["timeout_seconds"]), response.get_json()


def test_tags_are_kept_and_filter_the_list_ands_them(client):
    customer = f"customer:{uuid.uuid4().hex[:10]}"
    both = submit(client, "sum", {"a": 1, "b": 1}, tags=[customer, "env:test", customer])
    only = submit(client, "sum", {"a": 1, "b": 2}, tags=[customer])
    submit(client, "sum", {"a": 1, "b": 3}, tags=["env:test"])
    assert both["tags"] == [customer, "env:test"]  # each once, in the order given

    def listed(*tags: str) -> list[str]:
        query = "&".join(f"tag={t}" for t in tags)
        return [t["id"] for t in client.get(f"/api/v1/tasks?{query}&limit=200").get_json()["tasks"]]

    assert listed(customer) == [only["id"], both["id"]]  # newest first
    assert listed(customer, "env:test") == [both["id"]]
    assert client.get(f"/api/v1/tasks/{both['id']}").get_json()["tags"] == [customer, "env:test"]

    for tags, where in (
        (["no-colon"], "0"),
        (["a:b c"], "0"),
        (["ok:1", ":empty-key"], "1"),
        ([f"k{n}:v" for n in range(11)], None),
        ("k:v", None),
    ):
        response = client.post(
            "/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}, "tags": tags}
        )
        assert response.status_code == 400, response.get_json()
        details = response.get_json()["details"]["tags"]
        assert where is None or where in details
    response = client.get("/api/v1/tasks?tag=bad tag")
    assert response.status_code == 400 and "tag" in response.get_json()["details"]


def test_the_event_stream_filters_by_tag(base, worker):
    tag = f"batch:{uuid.uuid4().hex[:10]}"
    with Stream(f"{base}/api/v1/events?tag={tag}") as stream:
        other = submit_at(base, "sum", {"a": 1, "b": 1})
        wanted = submit_at(base, "sum", {"a": 20, "b": 22}, tags=[tag, "env:test"])
        seen = []
        while (event := stream.next()) is not None:
            assert tag in event["data"]["tags"], "a task without the tag was sent"
            seen.append(event["data"]["id"])
            if event["data"]["id"] == wanted["id"] and event["data"]["status"] == "COMPLETED":
                break
    assert other["id"] not in seen and wanted["id"] in seen


def test_a_schedules_tags_go_to_every_task_it_makes(app, client, worker):
    tag = f"report:{uuid.uuid4().hex[:10]}"
    body = {"name": f"tagged-{uuid.uuid4().hex[:8]}", "task": "sum", "parameters": {"a": 1, "b": 2}}
    response = client.post("/api/v1/schedules", json=body | {"cron": "* * * * *", "tags": [tag]})
    assert response.status_code == 201, response.get_json()
    schedule = response.get_json()
    assert schedule["tags"] == [tag]
    try:
        due = datetime.fromisoformat(schedule["next_run_at"]) + timedelta(seconds=1)
        scheduler = app.extensions["tasker"].scheduler
        # Other tests' schedules on this stack's database may be due too: count only this one's tasks.
        assert poll(lambda: scheduler.run_due(due), what="the scheduler's lock")["fired"] >= 1
        made = client.get(f"/api/v1/tasks?tag={tag}").get_json()["tasks"]
        assert [t["schedule_id"] for t in made] == [schedule["id"]]
        assert made[0]["tags"] == [tag]
        patched = client.patch(f"/api/v1/schedules/{schedule['id']}", json={"tags": ["a:b", "x:bad value"]})
        assert patched.status_code == 400 and "tags" in patched.get_json()["details"]
    finally:
        client.delete(f"/api/v1/schedules/{schedule['id']}")
