"""Redis, as the broker, restarted, emptied, paused or down (RELIABILITY.md scenarios 3, 4, 5, 7)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

from tests.faults.conftest import Fault
from tests.support import poll


class Submitter(threading.Thread):
    """A client that keeps submitting sum tasks and notes every answer."""

    def __init__(self, fault: Fault):
        super().__init__(daemon=True)
        self.fault = fault
        self.accepted: list[str] = []
        self.statuses: Counter[int] = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        client = self.fault.app.test_client()
        n = 0
        while not self.halt.is_set():
            n += 1
            response = self.fault.submit("sum", {"a": n, "b": 1}, client)
            self.statuses[response.status_code] += 1
            if response.status_code == 202:
                self.accepted.append(response.get_json()["id"])
            else:
                body = response.get_json()
                assert body["details"]["dependency"] == "broker", body
            self.halt.wait(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def assert_all_completed(fault: Fault, ids: list[str]) -> None:
    rows = fault.wait_terminal(ids, timeout=120)
    assert [row.status for row in rows] == ["COMPLETED"] * len(ids)
    # Sum tasks are quick, but one running when the broker's connection dropped is cancelled by
    # its worker (worker_cancel_long_running_tasks_on_connection_loss) and run a second time.
    again = [(str(row.id), row.attempts) for row in rows if row.attempts != 1]
    assert all(attempts == 2 for _, attempts in again) and len(again) <= 2, again


def test_3_redis_restarted_while_clients_keep_submitting(real):
    fault = real
    fault.start_beat()
    fault.start_worker("w", concurrency=2)
    submitter = Submitter(fault)
    submitter.start()
    try:
        poll(lambda: len(submitter.accepted) >= 20, what="submissions before the restart")
        fault.redis.shutdown_nosave()  # queued messages are lost with it
        time.sleep(2)  # Redis stays down this long
        fault.redis.start()
        seen = len(submitter.accepted)
        poll(lambda: len(submitter.accepted) >= seen + 20, timeout=30, what="submissions after the restart")
    finally:
        submitter.stop()
    assert set(submitter.statuses) <= {202, 503}, submitter.statuses
    assert submitter.statuses[503] > 0  # clients saw the outage, as a clear 503
    assert_all_completed(fault, submitter.accepted)


def test_4_redis_loses_its_data_and_the_sweep_republishes(real):
    fault = real
    beat = fault.start_beat()
    fault.start_worker("w", concurrency=1)
    client = fault.client
    ids = [
        fault.submit("process_data", {"duration_seconds": 0.2}, client).get_json()["id"] for _ in range(30)
    ]
    poll(lambda: sum(r.status == "COMPLETED" for r in fault.rows(ids)) >= 3, what="a few tasks done")
    fault.redis.client().flushall()  # every queued message is gone
    rows = fault.wait_terminal(ids, timeout=120)
    assert [row.status for row in rows] == ["COMPLETED"] * 30
    assert all(row.attempts <= 2 for row in rows)
    assert "republished" in beat.log_path.read_text()  # the sweep, not luck, brought them back


def test_5_redis_paused_or_stopped_then_workers_resume(real):
    fault = real
    fault.start_beat()
    fault.start_worker("w", concurrency=2)
    before = [fault.submit("sum", {"a": 1, "b": n}).get_json()["id"] for n in range(10)]
    fault.redis.client().execute_command("CLIENT", "PAUSE", "3000", "ALL")
    during = Submitter(fault)  # its requests wait for Redis rather than fail
    during.start()
    time.sleep(1)  # submissions meet the paused Redis for this long
    during.stop()
    assert set(during.statuses) <= {202, 503}, during.statuses
    assert fault.redis.process is not None
    os.kill(fault.redis.process.pid, signal.SIGSTOP)
    try:
        time.sleep(3)  # Redis stays stopped this long
    finally:
        os.kill(fault.redis.process.pid, signal.SIGCONT)
    after = [fault.submit("sum", {"a": 2, "b": n}).get_json()["id"] for n in range(10)]
    assert_all_completed(fault, before + during.accepted + after)


def test_7_broker_down_at_submit_is_a_503_naming_it_and_ready_tells_the_truth(real):
    fault = real
    fault.start_worker("w", concurrency=1)
    client = fault.client
    assert client.get("/health/ready").status_code == 200
    fault.redis.shutdown_nosave()
    response = fault.submit("sum", {"a": 1, "b": 2})
    assert response.status_code == 503
    assert response.get_json()["details"]["dependency"] == "broker"
    listed = client.get("/api/v1/tasks?limit=200").get_json()["tasks"]
    assert listed == []  # nothing was kept that looks queued
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and "the broker" in ready.get_json()["error"]
    assert ready.get_json()["details"]["broker"] != "ok" and ready.get_json()["details"]["database"] == "ok"
    fault.redis.start()
    response = poll(
        lambda: (r := fault.submit("sum", {"a": 1, "b": 2})).status_code == 202 and r,
        timeout=30,
        what="submissions to be accepted again",
    )
    assert fault.wait_terminal([response.get_json()["id"]])[0].result == 3
    poll(lambda: client.get("/health/ready").status_code == 200, timeout=30, what="ready again")
