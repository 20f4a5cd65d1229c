"""SIGTERM to the API while batches of submits are in flight: every request is answered or
fails, and no row is left without its message nor a message without its row."""

from __future__ import annotations

import json
import signal
from collections import Counter

import sqlalchemy as sa

from app.models import task as task_model
from tests.conftest import child_env
from tests.faults.conftest import Fault
from tests.faults.test_cluster import Client  # submits through one API until stopped
from tests.support import answers, free_port, poll, start_gunicorn


def test_sigterm_with_batches_in_flight_leaves_no_row_without_its_message(real):
    fault: Fault = real
    port = free_port()
    env = child_env({**fault.env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"})
    server = start_gunicorn(env, fault.tmp / "gunicorn.log")
    fault.processes.append(server)
    base = f"http://127.0.0.1:{port}"
    poll(lambda: answers(f"{base}/health"), what="the API to answer")
    clients = [Client(base, f"c{n}") for n in range(32)]
    for client in clients:
        client.start()
    try:
        poll(lambda: sum(len(c.accepted) for c in clients) >= 300, timeout=60, what="300 submissions")
        server.send_signal(signal.SIGTERM)  # graceful: in-flight requests finish, then it exits
        server.wait(timeout=60)
    finally:
        for client in clients:
            client.halt.set()
        for client in clients:
            client.stop()
    accepted = [task_id for client in clients for task_id in client.accepted]
    replies = sum((client.answers for client in clients), Counter())
    assert set(replies) <= {"202", "ConnectionError", "ChunkedEncodingError"}, replies  # answered, or cut off
    rows = {str(r.id) for r in fault.db.run(lambda c: list(c.execute(sa.select(task_model.tasks.c.id))))}
    broker = fault.redis.client()
    messages = [
        json.loads(raw)["headers"]["id"]
        for key in broker.keys("*")
        if broker.type(key) == b"list"  # the queues' lists (kombu's bindings are sets)
        for raw in broker.lrange(key, 0, -1)
    ]
    assert len(messages) == len(set(messages))
    assert rows == set(messages)  # no row without its message, no message without its row
    assert set(accepted) <= rows and len(accepted) == len(set(accepted))
    print(
        f"\nSIGTERM mid-load: {len(accepted)} accepted, {len(rows)} rows, {len(messages)} messages; "
        f"answers {dict(replies)}"
    )
