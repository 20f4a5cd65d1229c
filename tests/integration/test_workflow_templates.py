"""Stored workflow templates with a JSON Schema for their input, started over HTTP, from Python
and by a schedule (`start_workflow`); `?wait=`, the event stream and the webhook of a workflow."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from app.core.errors import InvalidInput
from tests.integration.test_webhooks import verified
from tests.integration.test_workflows import by_step, ended, start, thumbnails
from tests.support import Receiver

pytestmark = pytest.mark.integration

SCHEMA = {
    "type": "object",
    "properties": {"count": {"type": "integer", "minimum": 0, "maximum": 50}},
    "required": ["count"],
    "additionalProperties": False,
}


def template(client: Any, name: str | None = None) -> str:
    """A stored thumbnails template taking {"count": n}: its name."""
    name = name or f"thumbs-{uuid.uuid4().hex[:8]}"
    body = thumbnails(0)
    body["steps"][0]["parameters"]["count"] = {"$input": "/count"}
    stored = {"description": "Thumbnails of n images", "input_schema": SCHEMA, "steps": body["steps"]}
    answer = client.put(f"/api/v1/workflow-templates/{name}", json=stored)
    assert answer.status_code == 201, answer.get_json()
    assert answer.get_json()["input_schema"] == SCHEMA
    again = client.put(f"/api/v1/workflow-templates/{name}", json=stored)
    assert again.status_code == 200  # replaced
    return name


def test_a_template_starts_workflows_with_its_input_checked_against_its_schema(client, worker):
    name = template(client)
    started = start(client, {"template": name, "input": {"count": 4}})
    workflow = ended(client, started["id"])
    assert workflow["name"] == name and workflow["status"] == "COMPLETED"
    assert by_step(workflow)["report"]["result"] == {"images": 4, "thumbnails": 4}
    bad = client.post("/api/v1/workflows", json={"template": name, "input": {"count": 99}})
    assert bad.status_code == 400 and "input.count" in bad.get_json()["details"], bad.get_json()
    assert "99 is greater than the maximum of 50" in bad.get_json()["error"]
    missing = client.post("/api/v1/workflows", json={"template": name, "input": {}})
    assert missing.status_code == 400 and "'count' is a required property" in missing.get_json()["error"]
    unknown = client.post("/api/v1/workflows", json={"template": "nope", "input": {}})
    assert unknown.status_code == 400 and "template" in unknown.get_json()["details"]
    both = client.post("/api/v1/workflows", json={"template": name, "steps": thumbnails(1)["steps"]})
    assert both.status_code == 400
    listed = client.get("/api/v1/workflow-templates?limit=200").get_json()["templates"]
    assert name in [t["name"] for t in listed]
    assert client.delete(f"/api/v1/workflow-templates/{name}").status_code == 204
    assert client.get(f"/api/v1/workflow-templates/{name}").status_code == 404
    assert client.delete(f"/api/v1/workflow-templates/{name}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input_schema": {"type": "nonsense"}, "steps": [{"id": "a", "task": "sum"}]}, "input_schema"),
        ({"steps": [{"id": "a", "task": "nope"}]}, "steps.0.task"),
        ({"steps": [{"id": "a", "task": "sum", "after": ["a"]}]}, "steps.0.after"),
        ({"steps": [{"id": "a", "task": "sum", "parameters": {"a": "x", "b": 1}}]}, "steps.0.parameters"),
    ],
    ids=["bad-schema", "unknown-type", "self-parent", "static-parameters"],
)
def test_a_bad_template_is_refused_naming_the_field(client, body, field):
    answer = client.put("/api/v1/workflow-templates/bad", json=body)
    assert answer.status_code == 400 and field in answer.get_json()["details"], answer.get_json()


def test_wait_answers_when_the_workflow_ends(client, worker):
    workflow = start(client, thumbnails(3))
    answer = client.get(f"/api/v1/workflows/{workflow['id']}?wait=30").get_json()
    assert answer["status"] == "COMPLETED"
    assert client.get(f"/api/v1/workflows/{workflow['id']}?wait=-1").status_code == 400


def test_the_event_stream_tells_each_step_and_ends_with_the_workflow(client, worker):
    body = thumbnails(3)  # a first step that takes a while: the stream is open before the rest run
    body["steps"].insert(
        0, {"id": "slow", "task": "count_items", "parameters": {"items": 5, "step_seconds": 0.1}}
    )
    body["steps"][1]["after"] = ["slow"]
    workflow_id = start(client, body)["id"]
    response = client.get(f"/api/v1/workflows/{workflow_id}/events", buffered=False)
    events = []
    for line in b"".join(response.response).decode().split("\n\n"):
        fields = dict(
            part.split(": ", 1) for part in line.splitlines() if ": " in part and not part.startswith(":")
        )
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    assert events[0][0] == "workflow" and events[-1][0] == "workflow"
    first, final = events[0][1], events[-1][1]
    assert final["status"] == "COMPLETED"
    steps = {data["step"] for kind, data in events if kind == "task"}
    assert "list" in steps and any(step.startswith("resize[") for step in steps)
    # Every step's final status was told, by a task event or already by the first event.
    told = {step["task_id"]: step["status"] for step in first["steps"]}
    told |= {data["id"]: data["status"] for kind, data in events if kind == "task"}
    assert {step["id"]: told[step["task_id"]] for step in final["steps"]} == dict.fromkeys(
        ["slow", "list", "resize", "report"], "COMPLETED"
    )


def test_python_starts_a_workflow_and_a_template_without_http(app, client, worker):
    from tasker import TaskFailed, ref, workflow

    with app.app_context():
        handle = workflow(
            "squares",
            input={"numbers": [1, 2, 3]},
            steps=[
                {
                    "id": "add",
                    "task": "sum",
                    "map": {"over": ref.input("/numbers")},
                    "parameters": {"a": ref.item(), "b": 1},
                },
                {
                    "id": "total",
                    "task": "summarize",
                    "after": ["add"],
                    "parameters": {"results": ref.step("add")},
                },
            ],
        )
        assert handle.get(timeout=60) == {"add": [2, 3, 4], "total": {"images": 3, "thumbnails": 3}}
        assert client.get(f"/api/v1/workflows/{handle.id}").get_json()["owner"] == "default"
        started = workflow(template=template(client), input={"count": 2})
        assert started.get(timeout=60)["report"] == {"images": 2, "thumbnails": 2}
        with pytest.raises(InvalidInput) as refused:
            workflow("bad", steps=[{"id": "a", "task": "nope"}])
        assert "steps.0.task" in refused.value.details
        failing = workflow(
            "failing", steps=[{"id": "a", "task": "resize_image", "parameters": {"key": "k", "fail": True}}]
        )
        with pytest.raises(TaskFailed, match="cannot read k"):
            failing.get(timeout=60)


def test_start_workflow_starts_a_template_once_as_a_schedule_would(app, client, worker):
    """A schedule makes a `start_workflow` task each fire time; the task starts the template's
    workflow, under its own id as Idempotency-Key, so a second run starts no second workflow."""
    name = template(client)
    schedule = {"name": f"nightly-{uuid.uuid4().hex[:8]}", "task": "start_workflow", "cron": "0 3 * * *"}
    made = client.post(
        "/api/v1/schedules", json=schedule | {"parameters": {"template": name, "input": {"count": 2}}}
    )
    assert made.status_code == 201, made.get_json()
    assert client.delete(f"/api/v1/schedules/{made.get_json()['id']}").status_code == 204
    body = {"name": "start_workflow", "parameters": {"template": name, "input": {"count": 2}}}
    task = client.post("/api/v1/tasks", json=body).get_json()
    task = client.get(f"/api/v1/tasks/{task['id']}?wait=30").get_json()
    assert task["status"] == "COMPLETED", task
    workflow = ended(client, task["result"]["workflow_id"])
    assert (workflow["name"], workflow["status"]) == (name, "COMPLETED")
    tasker = app.extensions["tasker"]
    body = {"template": name, "input": {"count": 2}}
    again, created = tasker.workflows.submit(body, "default", f"start_workflow:{task['id']}")
    assert (again["id"], created) == (workflow["id"], False)
    unknown = {"name": "start_workflow", "parameters": {"template": "nope", "input": {}}}
    failed = client.get(
        f"/api/v1/tasks/{client.post('/api/v1/tasks', json=unknown).get_json()['id']}?wait=30"
    )
    assert failed.get_json()["error"] == "template: No workflow template 'nope'."


def test_a_workflows_ending_is_delivered_signed_to_its_webhook(client, worker):
    receiver = Receiver().start()
    try:
        done = start(client, thumbnails(2) | {"webhook": {"url": receiver.url("/done")}})
        failing = {
            "name": "failing",
            "steps": [{"id": "a", "task": "resize_image", "parameters": {"key": "k", "fail": True}}],
            "webhook": {"url": receiver.url("/failed"), "events": ["failed"]},
        }
        failed = start(client, failing)
        quiet = start(
            client, thumbnails(1) | {"webhook": {"url": receiver.url("/quiet"), "events": ["failed"]}}
        )
        for workflow in (done, failed, quiet):
            ended(client, workflow["id"])
        got = {request["path"]: verified(request) for request in receiver.got(2)}
        assert set(got) == {"/done", "/failed"}  # the quiet one completed: nothing asked for
        assert got["/done"]["type"] == "workflow.completed"
        assert got["/done"]["workflow"] == client.get(f"/api/v1/workflows/{done['id']}").get_json()
        assert got["/failed"]["type"] == "workflow.failed"
        assert got["/failed"]["workflow"]["error"].startswith("step a failed: ValueError: cannot read k")
        refused = client.post(
            "/api/v1/workflows", json=thumbnails(1) | {"webhook": {"url": "ftp://example.com/x"}}
        )
        assert refused.status_code == 400 and "webhook" in json.dumps(refused.get_json()["details"])
    finally:
        receiver.stop()
