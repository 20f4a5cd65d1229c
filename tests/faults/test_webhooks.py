"""Webhook deliveries under faults: a worker killed mid-delivery, and Redis restarted with
deliveries queued. No delivery is lost; a receiver may see one twice (at-least-once), with the
same webhook-id."""

from __future__ import annotations

import uuid
from typing import Any

from standardwebhooks.webhooks import Webhook

from app.models import webhook as webhook_model
from tests.faults.conftest import Fault
from tests.support import WEBHOOK_SECRET, Receiver, StallingReceiver, poll


def submit_hooked(fault: Fault, url: str, count: int) -> list[str]:
    client = fault.client
    ids = []
    for n in range(count):
        body = {"name": "sum", "parameters": {"a": n, "b": 1}, "webhook": {"url": url}}
        response = client.post("/api/v1/tasks", json=body)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def deliveries_of(
    fault: Fault, ids: list[str], headers: dict[str, str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    client = fault.client
    return {
        task_id: client.get(f"/api/v1/tasks/{task_id}/deliveries", headers=headers).get_json()["deliveries"]
        for task_id in ids
    }


def all_delivered(fault: Fault, ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    def done() -> dict[str, dict[str, Any]] | None:
        found = deliveries_of(fault, ids)
        if all(len(d) == 1 and d[0]["status"] == "DELIVERED" for d in found.values()):
            return {task_id: d[0] for task_id, d in found.items()}
        return None

    return poll(done, timeout=timeout, interval=0.2, what=f"{len(ids)} deliveries")


def test_a_worker_killed_mid_delivery_delivers_again(real):
    fault = real
    receiver = Receiver().start()
    try:
        receiver.released.clear()  # the receiver holds its answer: the worker waits mid-delivery
        fault.start_beat()
        first = fault.start_worker("first", concurrency=1, queues="default,webhooks")
        (task_id,) = submit_hooked(fault, receiver.url(), 1)
        receiver.got(1)
        fault.kill_hard(first)
        receiver.released.set()
        fault.start_worker("second", concurrency=1, queues="default,webhooks")
        delivered = all_delivered(fault, [task_id])[task_id]
        requests = receiver.got(2)
        assert {r["headers"]["webhook-id"] for r in requests} == {delivered["webhook_id"]}
        for request in requests:
            Webhook(WEBHOOK_SECRET).verify(request["body"], request["headers"])
        assert delivered["attempts"] == 2  # the killed attempt counts, and is on record as lost
        assert [a["status_code"] for a in delivered["history"]] == [None, 200]
        assert delivered["history"][0]["error"] == webhook_model.LOST
        assert "webhook deliveries queued again" in (fault.tmp / "beat.log").read_text()
    finally:
        receiver.stop()


def test_redis_restarted_with_deliveries_queued_loses_none(real):
    fault = real
    receiver = Receiver().start()
    try:
        fault.start_beat()
        fault.start_worker("tasks", concurrency=2, queues="default")  # nobody sends deliveries yet
        ids = submit_hooked(fault, receiver.url(), 20)
        fault.wait_terminal(ids)
        queued = deliveries_of(fault, ids)
        assert all(d[0]["status"] == "QUEUED" for d in queued.values())
        fault.redis.shutdown_nosave()  # every queued delivery message is lost with it
        fault.redis.start()
        fault.start_worker("hooks", concurrency=2, queues="webhooks")
        delivered = all_delivered(fault, ids)
        got = {r["headers"]["webhook-id"] for r in receiver.requests}
        assert got == {d["webhook_id"] for d in delivered.values()}  # each one, none lost
        assert len(receiver.requests) == 20  # and none twice: the sweep found them unsent
    finally:
        receiver.stop()


STALLING = {
    "AUTH_MODE": "keys",
    "WEBHOOK_ALLOW_HTTP": "true",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "WEBHOOK_TIMEOUT_SECONDS": "2",
    "WEBHOOK_RETRY_DELAYS": "0.5,0.5",  # three attempts
}


def test_stalling_receivers_hold_neither_the_tasks_pool_nor_a_delivery_past_its_cap(real):
    """Five tarpits (a byte every 0.5 s of a promised 100000) and five receivers that never
    answer, on one owner's webhooks, while another owner runs 100 sums: the sums are not held up
    (deliveries run on a threaded worker of their own, as make run and compose start them), and
    every stalled delivery ends FAILED after exactly three attempts, each on record."""
    fault = real
    fault.env.update(STALLING)
    keys = fault.app.extensions["tasker"].keys
    tag = uuid.uuid4().hex[:8]
    mallory, bob = ({"X-API-Key": keys.create(f"{who}-{tag}")[1]} for who in ("mallory", "bob"))
    receivers = [StallingReceiver("tarpit", byte_every=0.5) for _ in range(5)]
    receivers += [StallingReceiver("silent") for _ in range(5)]
    client = fault.client
    try:
        fault.start_beat()
        fault.start_worker("tasks", 2, "default")
        fault.start_worker("hooks", 10, "webhooks", "--pool=threads")
        hooked = []
        for n, receiver in enumerate(receivers):
            body = {"name": "sum", "parameters": {"a": n, "b": 1}}
            body["webhook"] = {"url": f"http://127.0.0.1:{receiver.port}/"}
            hooked.append(client.post("/api/v1/tasks", json=body, headers=mallory).get_json()["id"])
        poll(lambda: all(r.connections for r in receivers), timeout=30, what="every receiver stalling")
        took = []
        for batch in range(10):  # ten at a time, the next once these are done: a steady load
            ids = fault_submit(client, bob, batch)
            rows = fault.wait_terminal(ids, timeout=30)
            took += [(row.completed_at - row.created_at).total_seconds() for row in rows]
        took.sort()
        assert took[98] < 1.0, f"p99 {took[98]:.2f} s; slowest {took[-5:]}"
        ended = poll(
            lambda: (
                (found := deliveries_of(fault, hooked, mallory))
                and all(d and d[0]["status"] == "FAILED" for d in found.values())
                and found
            ),
            timeout=60,
            interval=0.5,
            what="every stalled delivery to end",
        )
    finally:
        for receiver in receivers:
            receiver.stop()
    for (delivery,) in ended.values():
        assert delivery["attempts"] == 3 and len(delivery["history"]) == 3, delivery
        assert all(
            a["status_code"] is None and a["error"].startswith("timed out") for a in delivery["history"]
        )
        assert delivery["last_error"].endswith("gave up after 3 attempts")
    assert sum(r.connections for r in receivers) == 30  # three attempts each, no more


def fault_submit(client: Any, headers: dict[str, str], batch: int) -> list[str]:
    ids = []
    for n in range(10):
        answer = client.post(
            "/api/v1/tasks", json={"name": "sum", "parameters": {"a": batch, "b": n}}, headers=headers
        )
        assert answer.status_code == 202, answer.get_json()
        ids.append(answer.get_json()["id"])
    return ids
