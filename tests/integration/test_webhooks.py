"""Completion webhooks against a real local receiver, on both stacks, verified as a receiver would
(with the `standardwebhooks` package). The worker and beat are the session's; the tests' settings
(tests/conftest.py) open 127.0.0.1 by name and retry after 1, 2, 4, 8 s, then every 10 s."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.webhooks import NOT_PUBLIC
from app.models import schedule as schedule_model
from app.models.task import database_now
from tests.conftest import build_app
from tests.support import WEBHOOK_SECRET, Receiver, kill_family, poll

SETTLED = {"DELIVERED", "FAILED"}
# The session's worker sends deliveries, and its beat releases their retries.
pytestmark = pytest.mark.usefixtures("worker", "beat")


def verified(request: dict[str, Any], secret: str = WEBHOOK_SECRET) -> dict[str, Any]:
    """The payload, once its signature verifies as a receiver checks it (raises otherwise)."""
    return Webhook(secret).verify(request["body"], request["headers"])


def submit(
    client: Any, url: str, name: str = "sum", parameters: Any = None, **options: Any
) -> dict[str, Any]:
    webhook = {"url": url} | {k: v for k, v in options.items() if k == "events"}
    extra = {k: v for k, v in options.items() if k != "events"}
    body = {"name": name, "parameters": parameters or {"a": 1, "b": 2}, "webhook": webhook, **extra}
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def post_hooked(client: Any, url: str) -> Any:
    """A sum task with a webhook to `url`: the response, whatever it is."""
    return client.post(
        "/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}, "webhook": {"url": url}}
    )


def deliveries(client: Any, task_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/tasks/{task_id}/deliveries")
    assert response.status_code == 200, response.get_json()
    return response.get_json()["deliveries"]


def settled(client: Any, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The task's one delivery, once it is DELIVERED or FAILED."""

    def done() -> dict[str, Any] | None:
        found = deliveries(client, task_id)
        return found[0] if found and found[0]["status"] in SETTLED else None

    return poll(done, timeout=timeout, interval=0.1, what=f"the delivery of {task_id} to settle")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


def test_a_completed_task_is_delivered_once_signed_as_standard_webhooks_say(client, receiver):
    task = submit(client, receiver.url())
    delivery = settled(client, task["id"])
    (request,) = receiver.got(1)
    payload = verified(request)
    assert payload["type"] == "task.completed"
    assert payload["task"] == client.get(f"/api/v1/tasks/{task['id']}").get_json()
    assert payload["task"]["result"] == 3
    assert request["headers"]["webhook-id"] == delivery["webhook_id"]
    assert request["headers"]["content-type"] == "application/json"
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 1
    (attempt,) = delivery["history"]
    assert (attempt["status_code"], attempt["response"], attempt["error"]) == (200, "ok", None)
    with pytest.raises(WebhookVerificationError):  # another secret does not verify it
        verified(request, "whsec_" + "b3RoZXItc2VjcmV0LW9mLXRoaXJ0eS10d28tYnl0ZXM=")
    tampered = request | {"body": request["body"].replace(b'"result":3', b'"result":4')}
    with pytest.raises(WebhookVerificationError):
        verified(tampered)


def test_failed_and_cancelled_endings_and_the_events_a_webhook_asks_for(client, receiver):
    failed = submit(
        client, receiver.url("/failed"), "process_data", {"duration_seconds": 0, "fail_at_percent": 0}
    )
    later = submit(client, receiver.url("/cancelled"), countdown=3600)
    assert client.post(f"/api/v1/tasks/{later['id']}/cancel").status_code == 200
    quiet = submit(client, receiver.url("/quiet"), events=["failed"])  # it completes: nothing to send
    assert settled(client, failed["id"])["event"] == "task.failed"
    assert settled(client, later["id"])["event"] == "task.cancelled"
    by_path = {r["path"]: verified(r) for r in receiver.got(2)}
    assert by_path["/failed"]["type"] == "task.failed"
    assert by_path["/failed"]["task"]["error"].startswith("Failed on purpose")
    assert by_path["/cancelled"]["task"]["status"] == "CANCELLED"
    poll(lambda: client.get(f"/api/v1/tasks/{quiet['id']}").get_json()["status"] == "COMPLETED")
    assert client.get(f"/api/v1/tasks/{quiet['id']}").get_json()["webhook"]["events"] == ["failed"]
    assert deliveries(client, quiet["id"]) == []  # written with the outcome, so none will come


def test_500_twice_then_200_is_three_attempts_with_growing_gaps_and_one_success(client, receiver):
    receiver.answer((500, {}, "busy"), (500, {}, "still busy"), (200, {}, "thanks"))
    task = submit(client, receiver.url())
    delivery = settled(client, task["id"])
    first, second, third = receiver.got(3)
    assert len({r["headers"]["webhook-id"] for r in (first, second, third)}) == 1  # one id throughout
    assert all(verified(r)["task"]["id"] == task["id"] for r in (first, second, third))
    gaps = [second["at"] - first["at"], third["at"] - second["at"]]
    # The schedule's 1 s, then 2 s (+-10 %); beat publishes a due retry at its next tick (1 s),
    # which may add up to a second to either gap.
    assert gaps[0] >= 0.8 and gaps[1] >= 1.7 and gaps[0] < gaps[1] + 1.0, gaps
    assert delivery["status"] == "DELIVERED" and delivery["attempts"] == 3
    assert [a["status_code"] for a in delivery["history"]] == [500, 500, 200]
    assert [a["response"] for a in delivery["history"]] == ["busy", "still busy", "thanks"]
    assert len(receiver.requests) == 3


def test_a_429s_retry_after_is_waited_for(client, receiver):
    receiver.answer((429, {"Retry-After": "3"}, "slow down"), (200, {}, "thanks"))
    task = submit(client, receiver.url())
    delivery = settled(client, task["id"])
    first, second = receiver.got(2)
    assert second["at"] - first["at"] >= 2.9  # its Retry-After, not the schedule's 1 s
    assert [a["status_code"] for a in delivery["history"]] == [429, 200]


def test_a_4xx_or_a_redirect_fails_at_once_and_a_resend_by_hand_works(client, receiver):
    receiver.answer((410, {}, "gone"), (200, {}, "back"))
    gone = submit(client, receiver.url("/gone"))
    delivery = settled(client, gone["id"])
    assert (delivery["status"], delivery["attempts"], delivery["last_error"]) == ("FAILED", 1, "HTTP 410")

    resend = client.post(f"/api/v1/tasks/{gone['id']}/deliveries/{delivery['id']}/retry")
    assert resend.status_code == 202, resend.get_json()
    again = poll(
        lambda: (d := deliveries(client, gone["id"])[0])["status"] == "DELIVERED" and d,
        what="the resent delivery",
    )
    assert again["attempts"] == 2 and [a["status_code"] for a in again["history"]] == [410, 200]
    assert receiver.requests[1]["headers"]["webhook-id"] == delivery["webhook_id"]

    receiver.answer((302, {"Location": receiver.url("/elsewhere")}, ""))
    moved = submit(client, receiver.url("/moved"))
    delivery = settled(client, moved["id"])
    assert delivery["status"] == "FAILED" and "redirects are not followed" in delivery["last_error"]
    assert [r["path"] for r in receiver.requests] == ["/gone", "/gone", "/moved"]  # never /elsewhere

    unknown = client.post(f"/api/v1/tasks/{moved['id']}/deliveries/{uuid.uuid4()}/retry")
    assert unknown.status_code == 404
    assert client.get(f"/api/v1/tasks/{uuid.uuid4()}/deliveries").status_code == 404


def test_a_name_allowed_at_submit_but_loopback_at_connect_is_refused_at_connect(stack, client, receiver):
    """What DNS rebinding looks like to the worker: the API let the name through (here, because
    its WEBHOOK_ALLOWED_HOSTS names it), but the address the worker connects to is loopback and
    the worker's settings do not open it: the connection is refused before a byte is sent."""
    app = build_app(stack.env | {"WEBHOOK_ALLOWED_HOSTS": "127.0.0.1,localhost"})
    try:
        task = submit(app.test_client(), f"http://localhost:{receiver.port}/rebound")
        delivery = settled(client, task["id"])
    finally:
        app.extensions["tasker"].db.dispose()
    assert delivery["status"] == "FAILED" and delivery["attempts"] == 1
    assert delivery["history"][0]["error"] == "refused: localhost " + NOT_PUBLIC
    assert receiver.requests == []


# At submit: each refused with a 400 naming webhook.url (WEBHOOK_ALLOWED_HOSTS empty, http allowed
# unless the case says otherwise).
SSRF = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.1/hook", "loopback"),  # short form
    ("http://2130706433/hook", "loopback"),  # decimal
    ("http://0x7f000001/hook", "loopback"),  # hexadecimal
    ("http://0177.0.0.1/hook", "loopback"),  # octal
    ("http://localhost:8080/hook", "local or metadata name"),
    ("http://foo.localhost/hook", "local or metadata name"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),  # IPv4-mapped IPv6
    ("http://[::ffff:7f00:1]/hook", "loopback"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://[::]/hook", "unspecified"),
    ("http://10.0.0.8/hook", "private"),
    ("http://172.16.3.4/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),  # cloud metadata
    ("http://metadata.google.internal/computeMetadata/v1/", "local or metadata name"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[fd00::1]/hook", "private"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://100.64.0.1/hook", "not a public address"),  # carrier-grade NAT
    ("http://240.0.0.1/hook", "reserved"),
    ("http://[64:ff9b::7f00:1]/hook", "loopback"),  # NAT64 of 127.0.0.1
    ("http://[2002:7f00:1::]/hook", "loopback"),  # 6to4 of 127.0.0.1
    ("http://user:pass@example.com/hook", "credentials"),
    ("ftp://example.com/hook", "http or https"),
    ("http://exa mple.com/hook", "ASCII"),
    ("http://no-such-host.invalid/hook", "could not be resolved"),
    ("http://[::1/hook", "Not a valid URL"),
    ("https://example.com/" + "a" * 2100, "between 1 and 2048"),  # the schema says so first
]


def test_every_address_and_trick_in_the_ssrf_table_is_a_400_naming_the_field(stack):
    app = build_app(stack.env | {"WEBHOOK_ALLOWED_HOSTS": ""})
    client = app.test_client()
    try:
        for url, rule in SSRF:
            response = post_hooked(client, url)
            body = response.get_json()
            assert response.status_code == 400, (url, body)
            (message,) = body["details"].get("webhook.url") or body["details"]["webhook"]["url"]
            assert rule in message, (url, message)
        strict = build_app(stack.env | {"WEBHOOK_ALLOWED_HOSTS": "", "WEBHOOK_ALLOW_HTTP": "false"})
        response = post_hooked(strict.test_client(), "http://example.com/hook")
        assert response.status_code == 400
        assert response.get_json()["details"]["webhook.url"] == ["Must be an https URL."]
        strict.extensions["tasker"].db.dispose()
    finally:
        app.extensions["tasker"].db.dispose()


def test_bad_webhook_fields_and_a_missing_secret_are_400s(stack, client):
    for webhook, field in (
        ({}, "url"),
        ({"url": "https://example.com", "events": []}, "events"),
        ({"url": "https://example.com", "events": ["done"]}, "events"),
        ({"url": "https://example.com", "extra": 1}, "extra"),
        ("https://example.com", "Must be an object"),
    ):
        response = client.post("/api/v1/tasks", json={"name": "sum", "webhook": webhook})
        assert response.status_code == 400, (webhook, response.get_json())
        assert field in json.dumps(response.get_json()["details"]), (webhook, response.get_json())
    unsigned = build_app(stack.env | {"WEBHOOK_SECRET": ""})
    try:
        response = post_hooked(unsigned.test_client(), "https://example.com/hook")
        assert response.status_code == 400
        assert "WEBHOOK_SECRET" in response.get_json()["details"]["webhook"][0]
    finally:
        unsigned.extensions["tasker"].db.dispose()


def test_a_schedule_gives_its_webhook_to_the_tasks_it_makes(client, receiver):
    created = client.post(
        "/api/v1/schedules",
        json={"name": f"hooked-{uuid.uuid4().hex[:8]}", "task": "sum", "parameters": {"a": 2, "b": 2},
              "cron": "0 0 1 1 *", "webhook": {"url": receiver.url("/scheduled"), "events": ["completed"]}},
    )  # fmt: skip
    assert created.status_code == 201, created.get_json()
    schedule = created.get_json()
    assert schedule["webhook"] == {"url": receiver.url("/scheduled"), "events": ["completed"]}
    # Make it due now, as if its fire time had come: beat fires it.
    db = client.application.extensions["tasker"].db
    now = db.run(database_now)
    db.run(lambda c: schedule_model.update(c, uuid.UUID(schedule["id"]), next_run_at=now))
    (request,) = receiver.got(1)
    payload = verified(request)
    assert payload["task"]["schedule_id"] == schedule["id"] and payload["task"]["result"] == 4
    cleared = client.patch(f"/api/v1/schedules/{schedule['id']}", json={"webhook": None})
    assert cleared.status_code == 200 and cleared.get_json()["webhook"] is None
    client.delete(f"/api/v1/schedules/{schedule['id']}")


def test_with_api_keys_each_owner_signs_with_its_own_secret_and_rotates_it(stack, start_worker, receiver):
    """Keys mode: the key's creation shows its owner's secret, the worker signs with it, and after
    a rotation deliveries carry both signatures for the overlap."""
    if not stack.embedded:
        pytest.skip("one stack is enough: signing does not depend on the backends (and Redis dbs are few)")
    env = stack.env | stack.new_broker() | {"AUTH_MODE": "keys"}
    app = build_app(env)
    worker = start_worker(env, concurrency=1, name=f"keyed-{stack.name}")
    try:
        client = app.test_client()
        _, admin = app.extensions["tasker"].keys.create(f"admin-{uuid.uuid4().hex[:8]}", admin=True)
        made = client.post(
            "/api/v1/keys", json={"name": f"hooks-{uuid.uuid4().hex[:8]}"}, headers={"X-API-Key": admin}
        ).get_json()
        key, first = {"X-API-Key": made["key"]}, made["webhook_secret"]
        body = {"name": "sum", "parameters": {"a": 1, "b": 1}, "webhook": {"url": receiver.url("/keyed")}}
        assert client.post("/api/v1/tasks", json=body, headers=key).status_code == 202
        (request,) = receiver.got(1)
        assert verified(request, first)["task"]["owner"] == made["owner"]
        with pytest.raises(WebhookVerificationError):
            verified(request)  # not the deployment's secret: the owner's
        rotated = client.post("/api/v1/webhooks/secret/rotate", headers=key)
        assert rotated.status_code == 200, rotated.get_json()
        second = rotated.get_json()["secret"]
        assert second != first and second.startswith("whsec_")
        assert client.post("/api/v1/tasks", json=body, headers=key).status_code == 202
        request = receiver.got(2)[1]
        assert len(request["headers"]["webhook-signature"].split()) == 2
        for secret in (first, second):  # receivers on either secret accept it during the overlap
            verified(request, secret)
        again = client.post("/api/v1/webhooks/secret/rotate", headers=key)  # would drop `first` early
        assert again.status_code == 409 and "previous_valid_until" in again.get_json()["details"]
        other = client.post("/api/v1/webhooks/secret/rotate?owner=someone-else", headers=key)
        assert other.status_code == 400  # only admin keys name another owner
    finally:
        kill_family(worker)
        app.extensions["tasker"].db.dispose()


def test_a_receiver_down_for_a_minute_then_up_still_gets_it(client, receiver_outage):
    """The session's worker fixture submitted a task whose receiver was not listening (tests/
    conftest.py); a minute or more later (other tests ran meanwhile) the receiver comes up, and
    the next retry delivers it."""
    outage = receiver_outage
    down = poll(lambda: deliveries(client, outage.task_id), what="the first attempt")[0]
    time.sleep(max(0.0, 60 - (time.monotonic() - outage.began)))  # the outage lasts a minute
    during = deliveries(client, outage.task_id)[0]
    assert during["status"] == "WAITING" and during["attempts"] >= 2, json.dumps(during, indent=1)
    assert all(a["error"].startswith("could not connect") for a in during["history"])
    assert down["webhook_id"] == during["webhook_id"]
    outage.receiver.start()
    delivery = settled(client, outage.task_id, timeout=30)
    assert delivery["status"] == "DELIVERED" and delivery["history"][-1]["status_code"] == 200
    (request,) = outage.receiver.got(1)
    assert verified(request)["task"]["id"] == outage.task_id
