"""Monitoring: /health/db, /health/redis, workers in /health/ready, and /api/v1/queues."""

from __future__ import annotations

import threading

import pytest

from tests.conftest import build_app
from tests.integration.test_dependencies import down_database_url
from tests.support import closed_port


@pytest.fixture
def idle_app(stack):
    """The app on a broker of its own that no worker serves."""
    app = build_app({**stack.env, **stack.new_broker()})
    yield app
    app.extensions["tasker"].db.dispose()


def test_ready_fails_when_no_worker_answers(idle_app):
    response = idle_app.test_client().get("/health/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["details"]["workers"] == 0 and body["details"]["database"] == "ok"
    assert "none answered a ping within 1 s" in body["error"]


def test_ready_answers_as_soon_as_one_worker_replies(app, client, worker):
    assert client.get("/health/ready").get_json()["checks"]["workers"] == 1
    # With a 30 s ping timeout the answer still comes with the first reply, not at the timeout.
    answered: list[int] = []
    ping = threading.Thread(
        target=lambda: answered.append(app.extensions["tasker"].monitor.check_workers(30))
    )
    ping.start()
    ping.join(timeout=10)
    assert answered == [1], "no answer within 10 s: the ping waited for its whole timeout"


def test_health_db(client, stack, tmp_path):
    assert client.get("/health/db").get_json() == {"status": "ok", "checks": {"database": "ok"}}
    down = build_app({**stack.env, "DATABASE_URL": down_database_url(stack, tmp_path)}).test_client()
    response = down.get("/health/db")
    assert response.status_code == 503 and response.get_json()["details"]["database"] != "ok"


def test_health_redis(client, stack):
    checks = client.get("/health/redis").get_json()["checks"]
    if stack.embedded:
        assert checks == {"cache": "not used (in-process cache)", "broker": "not used (another broker)"}
        return
    assert checks == {"cache": "ok", "broker": "ok"}
    down = build_app({**stack.env, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}).test_client()
    response = down.get("/health/redis")
    assert response.status_code == 503
    assert response.get_json()["details"]["cache"] == "unavailable"


def by_name(report):
    return {queue["name"]: queue for queue in report["queues"]}


def test_queue_statistics_match_what_was_queued(idle_app):
    client = idle_app.test_client()
    before = by_name(client.get("/api/v1/queues").get_json())
    for n in range(3):
        client.post("/api/v1/tasks", json={"name": "sum", "parameters": {"a": n, "b": 1}})
    for city in ("Oslo", "Lima"):
        client.post("/api/v1/tasks", json={"name": "weather", "parameters": {"city": city}})
    report = client.get("/api/v1/queues").get_json()
    after = by_name(report)
    assert (after["default"]["messages_waiting"], after["external_api"]["messages_waiting"]) == (3, 2)
    assert after["default"]["pending"] - before["default"]["pending"] == 3
    assert after["external_api"]["pending"] - before["external_api"]["pending"] == 2
    assert after["default"]["oldest_pending_age_seconds"] >= 0
    assert set(report["totals"]) == {
        "SCHEDULED",
        "PENDING",
        "STARTED",
        "RETRYING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    }
    assert report["totals"]["PENDING"] >= 5
