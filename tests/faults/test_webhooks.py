"""Webhook deliveries under faults: a worker killed mid-delivery, and Redis restarted with
deliveries queued. No delivery is lost; a receiver may see one twice (at-least-once), with the
same webhook-id."""

from __future__ import annotations

from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.faults.conftest import Fault
from tests.support import WEBHOOK_SECRET, Receiver, poll


def submit_hooked(fault: Fault, url: str, count: int) -> list[str]:
    client = fault.client
    ids = []
    for n in range(count):
        body = {"name": "sum", "parameters": {"a": n, "b": 1}, "webhook": {"url": url}}
        response = client.post("/api/v1/tasks", json=body)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def deliveries_of(fault: Fault, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    client = fault.client
    return {
        task_id: client.get(f"/api/v1/tasks/{task_id}/deliveries").get_json()["deliveries"] for task_id in ids
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
        assert delivered["attempts"] == 2  # the killed attempt counts, though it left no answer
        assert [a["status_code"] for a in delivered["history"]] == [200]
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
