"""SIGTERM to the API while batches of submits are in flight: every request is answered or
fails, and no row is left without its message nor a message without its row."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter

import requests
import sqlalchemy as sa

from app.models import task as task_model
from tests.conftest import child_env
from tests.faults.conftest import Fault
from tests.support import free_port, poll, start_gunicorn

SUM = {"name": "sum", "parameters": {"a": 1, "b": 2}}


class Client(threading.Thread):
    def __init__(self, base: str):
        super().__init__(daemon=True)
        self.base = base
        self.accepted: list[str] = []
        self.answers: Counter[str] = Counter()
        self.halt = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self.halt.is_set():
            try:
                answer = session.post(f"{self.base}/api/v1/tasks", json=SUM, timeout=10)
            except requests.RequestException as exc:
                self.answers[type(exc).__name__] += 1
                self.halt.wait(0.05)
                continue
            self.answers[str(answer.status_code)] += 1
            if answer.status_code == 202:
                self.accepted.append(answer.json()["id"])


def test_sigterm_with_batches_in_flight_leaves_no_row_without_its_message(real):
    fault: Fault = real
    port = free_port()
    env = child_env({**fault.env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"})
    server = start_gunicorn(env, fault.tmp / "gunicorn.log")
    fault.processes.append(server)
    base = f"http://127.0.0.1:{port}"
    poll(lambda: _answers(f"{base}/health"), what="the API to answer")
    clients = [Client(base) for _ in range(32)]
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
            client.join(timeout=30)
    accepted = [task_id for client in clients for task_id in client.accepted]
    answers = sum((client.answers for client in clients), Counter())
    assert set(answers) <= {"202", "ConnectionError"}, answers  # answered, or refused a connection
    rows = {str(r.id) for r in fault.db.run(lambda c: list(c.execute(sa.select(task_model.tasks.c.id))))}
    broker = fault.redis.client()
    messages = [
        json.loads(raw)["headers"]["id"]
        for key in broker.keys("default*")
        for raw in broker.lrange(key, 0, -1)
    ]
    assert len(messages) == len(set(messages))
    assert rows == set(messages)  # no row without its message, no message without its row
    assert set(accepted) <= rows and len(accepted) == len(set(accepted))
    print(
        f"\nSIGTERM mid-load: {len(accepted)} accepted, {len(rows)} rows, {len(messages)} messages; "
        f"answers {dict(answers)}"
    )


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
