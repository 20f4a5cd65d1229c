"""RabbitMQ as the broker, stopped and started with tasks in flight and clients submitting.

The node is the test's own (`private_rabbit`): `rabbitmqctl stop_app` closes every connection and
refuses new ones, as a broker restart does; the queues are durable and the messages persistent,
so what it held survives. A killed worker on RabbitMQ is in test_workers.py (its `rabbit` runs).
"""

from __future__ import annotations

import time

from tests.faults.conftest import Fault
from tests.faults.test_redis import Submitter
from tests.support import poll


def test_rabbitmq_stopped_and_started_with_tasks_in_flight_and_submits_during_the_outage(private_rabbit):
    fault: Fault = private_rabbit
    assert fault.rabbit is not None
    beat = fault.start_beat()
    worker = fault.start_worker("w", concurrency=2)
    client = fault.client
    # Slow enough that some are running and the rest queued when the broker goes.
    queued = [
        fault.submit("process_data", {"duration_seconds": 0.3}, client).get_json()["id"] for _ in range(20)
    ]
    poll(lambda: any(row.status == "STARTED" for row in fault.rows(queued)), what="a task running")
    submitter = Submitter(fault)
    submitter.start()
    try:
        poll(lambda: len(submitter.accepted) >= 10, what="submissions before the outage")
        fault.rabbit.stop_app()
        down_at = len(submitter.accepted)
        poll(lambda: submitter.statuses[503] >= 3, timeout=30, what="submits refused during the outage")
        time.sleep(2)  # the broker stays down this long
        fault.rabbit.start_app()
        poll(
            lambda: len(submitter.accepted) >= down_at + 20, timeout=60, what="submissions after the restart"
        )
    finally:
        submitter.stop()
    assert set(submitter.statuses) <= {202, 503}, submitter.statuses
    ids = queued + submitter.accepted
    rows = fault.wait_terminal(ids, timeout=120)
    assert [row.status for row in rows] == ["COMPLETED"] * len(ids), fault.report(ids)
    assert len({row.id for row in rows}) == len(ids)
    # A task cut off by the lost connection ran again (its message was never acked); no other.
    assert all(row.attempts <= 2 for row in rows)
    again = sum(row.attempts == 2 for row in rows)
    print(
        f"\nRabbitMQ down and up: {len(ids)} accepted, all COMPLETED once; {submitter.statuses[503]} "
        f"submits refused with a 503 while it was down; {again} cut off by the lost connection and run again"
    )
    sums = {row.id: row.result for row in rows if row.name == "sum_two_numbers"}
    assert len(sums) == len(submitter.accepted) and all(isinstance(v, int) for v in sums.values())
    log = worker.log_path.read_text()
    assert "Connection to broker lost" in log or "consumer: Cannot connect" in log  # it did see the outage
    assert beat.poll() is None and worker.poll() is None  # both carried on without a restart
    assert client.get("/health/ready").status_code == 200
