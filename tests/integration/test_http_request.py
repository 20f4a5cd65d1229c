"""http_request against real local receivers, on all three stacks: a signed call the receiver
verifies, retries of transient answers, failures that are final, redirects not followed, a slow
endpoint timed out, every SSRF case refused, and credential headers masked everywhere they could
be kept. The suite's settings allow 127.0.0.1 only (HTTP_TASK_ALLOWED_HOSTS), over plain http."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import pytest
from standardwebhooks import Webhook

from tests.conftest import WEBHOOK_SECRET
from tests.integration.test_own_task_types import finished, submit
from tests.support import Receiver, poll, row_of

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


def call(client, url: str, **parameters) -> dict:
    options = {key: parameters.pop(key) for key in ("retry_policy",) if key in parameters}
    return submit(client, "http_request", {"url": url, **parameters}, **options)


def test_a_signed_call_completes_with_the_answer_and_its_credentials_stay_sealed(
    client, db, receiver, worker
):
    receiver.answer(
        (201, {"Content-Type": "application/json", "X-Internal": "no", "ETag": '"v1"'}, '{"ok": true}')
    )
    credential = f"Bearer hdr-secret-{uuid.uuid4().hex}"
    headers = {"Authorization": credential, "X-Api-Key": "hdr-secret-key-1", "X-Trace": "t-1"}
    task = call(client, receiver.url("/jobs?x=1"), method="PUT", json={"n": 1}, headers=headers)
    shown = {"Authorization": "********", "X-Api-Key": "********", "X-Trace": "t-1"}
    assert task["parameters"]["headers"] == shown

    done = finished(client, task["id"])
    assert done["status"] == "COMPLETED", done
    result = done["result"]
    assert (result["status_code"], result["body"], result["body_truncated"]) == (201, {"ok": True}, False)
    assert result["headers"] == {  # a safe subset, names in lower case
        "content-type": "application/json",
        "content-length": "12",
        "etag": '"v1"',
        "date": result["headers"]["date"],
    }
    assert result["elapsed_ms"] > 0

    [got] = receiver.got(1)
    assert (got["method"], got["path"], json.loads(got["body"])) == ("PUT", "/jobs?x=1", {"n": 1})
    assert got["headers"]["Authorization"] == credential and got["headers"]["X-Api-Key"] == "hdr-secret-key-1"
    assert got["headers"]["webhook-id"] == task["id"]
    verified = Webhook(WEBHOOK_SECRET).verify(got["body"], got["headers"])  # raises unless Tasker signed it
    assert verified == {"n": 1}

    row = row_of(db, task["id"])  # the row: masked parameters, and the credentials only sealed
    assert row.parameters["headers"] == shown
    assert "hdr-secret" not in json.dumps(row.parameters) and "hdr-secret" not in row.sealed
    assert "hdr-secret" not in json.dumps(client.get(f"/api/v1/tasks/{task['id']}").get_json())


def test_a_transient_answer_is_retried_and_a_final_one_fails_at_once(client, receiver, worker):
    receiver.answer((503, {"Retry-After": "0"}, "busy"), (200, {"Content-Type": "text/plain"}, "done"))
    task = finished(client, call(client, receiver.url("/flaky"), method="GET")["id"])
    assert (task["status"], task["attempts"], task["result"]["body"]) == ("COMPLETED", 2, "done")
    assert [r["method"] for r in receiver.requests] == ["GET", "GET"]

    receiver.requests.clear()
    receiver.answer((404, {}, "no such job"))
    task = finished(client, call(client, receiver.url("/missing"))["id"])
    assert (task["status"], task["attempts"]) == ("FAILED", 1)
    assert task["error"] == "HTTP 404 from 127.0.0.1: no such job"
    assert len(receiver.requests) == 1


def test_a_redirect_is_not_followed(client, receiver, worker):
    receiver.answer((302, {"Location": receiver.url("/elsewhere")}, ""))
    task = finished(client, call(client, receiver.url("/moved"))["id"])
    assert task["status"] == "FAILED"
    assert task["error"] == (
        f"HTTP 302 from 127.0.0.1: redirects are not followed (Location: {receiver.url('/elsewhere')})"
    )
    assert [r["path"] for r in receiver.requests] == ["/moved"]


def test_a_slow_endpoint_is_timed_out(client, receiver, worker):
    receiver.released.clear()  # it holds every answer
    try:
        policy = {"max_retries": 0, "on": "transient"}
        task = call(client, receiver.url("/slow"), timeout_seconds=1, retry_policy=policy)
        ended = finished(client, task["id"])
    finally:
        receiver.released.set()
    assert ended["status"] == "FAILED"
    assert ended["error"] == "127.0.0.1 did not answer within 1 s (gave up after 1 attempts)"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://localhost:8080/hook", "localhost is not one of the hosts HTTP_TASK_ALLOWED_HOSTS allows."),
        ("http://10.0.0.7/hook", "is not one of the hosts HTTP_TASK_ALLOWED_HOSTS allows"),
        (
            "http://169.254.169.254/latest/meta-data/",
            "is not one of the hosts HTTP_TASK_ALLOWED_HOSTS allows",
        ),
        ("http://[::1]:8080/", "is not one of the hosts HTTP_TASK_ALLOWED_HOSTS allows"),
        ("http://user:pw@127.0.0.1/hook", "Must not hold credentials"),
        ("ftp://127.0.0.1/file", "Must be an http or https URL."),
        ("http://127.0.0.1 /x", "Must be ASCII without spaces"),
        ("not a url", "Must be ASCII without spaces"),
    ],
)
def test_every_ssrf_case_is_refused_at_submit(client, url, reason):
    response = client.post("/api/v1/tasks", json={"name": "http_request", "parameters": {"url": url}})
    assert response.status_code == 400, response.get_json()
    [said] = response.get_json()["details"]["parameters"]["url"]
    assert reason in said, said


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"method": "TRACE"}, "method"),
        ({"headers": {"Host": "evil"}}, "headers"),
        ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "headers"),
        ({"headers": {"Bad Name": "x"}}, "headers"),
        ({"json": {}, "body": "x"}, "body"),
        ({"timeout_seconds": 301}, "timeout_seconds"),
    ],
)
def test_bad_request_parameters_are_400_naming_the_field(client, receiver, parameters, field):
    body = {"name": "http_request", "parameters": {"url": receiver.url(), **parameters}}
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 400, response.get_json()
    assert field in response.get_json()["details"]["parameters"]


def test_a_retry_and_a_schedule_keep_the_sealed_credentials(app, client, receiver, worker):
    credential = f"Bearer hdr-secret-{uuid.uuid4().hex}"
    receiver.answer((404, {}, "not yet"), (200, {}, "ok"))
    parameters = {"url": receiver.url("/again"), "headers": {"Authorization": credential}}
    failed = finished(client, submit(client, "http_request", parameters)["id"])
    assert failed["status"] == "FAILED"
    retried = client.post(f"/api/v1/tasks/{failed['id']}/retry").get_json()
    assert finished(client, retried["id"])["status"] == "COMPLETED"
    assert [r["headers"]["Authorization"] for r in receiver.got(2)] == [credential, credential]

    body = {"name": f"call-{uuid.uuid4().hex[:8]}", "task": "http_request", "cron": "* * * * *"}
    made = client.post("/api/v1/schedules", json=body | {"parameters": parameters})
    assert made.status_code == 201, made.get_json()
    schedule = made.get_json()
    assert schedule["parameters"]["headers"] == {"Authorization": "********"}
    try:
        # A change that sends back what it was shown keeps the credential sealed.
        changed = client.patch(
            f"/api/v1/schedules/{schedule['id']}", json={"parameters": schedule["parameters"]}
        )
        assert changed.status_code == 200, changed.get_json()
        due = datetime.fromisoformat(schedule["next_run_at"]) + timedelta(seconds=1)
        assert poll(lambda: app.extensions["tasker"].scheduler.run_due(due), what="the lock")["fired"] == 1
        [task] = client.get(f"/api/v1/tasks?schedule_id={schedule['id']}").get_json()["tasks"]
        assert finished(client, task["id"])["status"] == "COMPLETED"
        assert receiver.got(3)[2]["headers"]["Authorization"] == credential
    finally:
        client.delete(f"/api/v1/schedules/{schedule['id']}")
