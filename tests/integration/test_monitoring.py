"""Monitoring: /health/db, /health/redis, workers in /health/ready, and /api/v1/queues."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta

import pytest

from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models.task import tasks
from tests.conftest import build_app
from tests.integration.test_dependencies import down_database_url
from tests.support import closed_port, insert_task, poll

# How Tasker writes a time in its answers (app/core/resources.py: utc_iso).
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


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
        assert checks == {
            "cache": "not used (in-process cache)",
            "broker": "not used (the filesystem broker)",
        }
        return
    # On RabbitMQ, Redis is the cache only (/health/ready asks the broker, whichever it is).
    assert checks == {"cache": "ok", "broker": "ok" if stack.name == "real" else "not used (the amqp broker)"}
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
        "WAITING",
        "SCHEDULED",
        "PENDING",
        "STARTED",
        "RETRYING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
    }
    assert report["totals"]["PENDING"] >= 5


def test_stats_from_the_records(app, client, db):
    """Counts by status and run/wait percentiles per task type (percentile_cont on PostgreSQL,
    the same interpolation in Python on SQLite), scoped to one owner's rows."""
    owner = f"stats-{uuid.uuid4().hex[:8]}"
    now = db.run(task_model.database_now)
    for i, status in enumerate(["COMPLETED"] * 8 + ["FAILED"] * 2):
        values = {
            "created_at": now - timedelta(seconds=20),
            "started_at": now - timedelta(seconds=20 - i),  # waited i seconds
            "completed_at": now - timedelta(seconds=10 - i),  # ran 10 s
        }
        task_id = insert_task(db, "sum_two_numbers", status=status, owner=owner)
        db.run(lambda c, t=task_id, v=values: c.execute(tasks.update().where(tasks.c.id == t).values(**v)))
    stats = app.extensions["tasker"].monitor.stats(3600, owner)
    sums = next(t for t in stats["task_types"] if t["task_type"] == "sum_two_numbers")
    assert sums["finished"] == {"COMPLETED": 8, "FAILED": 2, "CANCELLED": 0}
    assert sums["run_seconds"] == {"p50": 10.0, "p95": 10.0, "p99": 10.0}
    assert sums["wait_seconds"] == {"p50": 4.5, "p95": 8.55, "p99": 8.91}

    answer = client.get("/api/v1/stats?window=3h")
    assert answer.status_code == 200 and answer.get_json()["window_seconds"] == 10800
    since, until = answer.get_json()["since"], answer.get_json()["until"]
    assert TIME.fullmatch(since) and TIME.fullmatch(until) and since < until  # written as task times are
    bad = client.get("/api/v1/stats?window=2x")
    assert bad.status_code == 400 and "Must be one of: 1m, 5m" in bad.get_json()["details"]["window"][0]
    refused = client.get(f"/api/v1/stats?owner={owner}")  # open mode: the caller is no admin
    assert refused.status_code == 400 and "owner" in refused.get_json()["details"]


def test_beats_housekeeping_passes_show_in_readiness_and_metrics(client, beat, worker):
    def reported():
        checks = client.get("/health/ready").get_json()["checks"]["housekeeping"]
        return (
            checks
            if checks["publish-due"]["late"] is False and checks["recovery-sweep"]["last_run"]
            else None
        )

    checks = poll(reported, what="beat's passes in /health/ready")
    assert checks["recovery-sweep"]["interval_seconds"] == 30 and checks["recovery-sweep"]["late"] is False
    assert TIME.fullmatch(checks["recovery-sweep"]["last_run"])
    page = client.get("/metrics").get_data(as_text=True)
    assert 'tasker_housekeeping_last_run_timestamp_seconds{housekeeping="recovery-sweep"}' in page
    assert 'tasker_housekeeping_interval_seconds{housekeeping="publish-due"} 1.0' in page
    assert 'tasker_recovered_total{reason="requeued"}' in page


def test_the_queue_report_counts_the_callers_tasks_only(stack_env):
    """Keys mode: an owner's /api/v1/queues counts its own rows; an admin's counts everyone's."""
    import uuid

    from tests.conftest import build_app

    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    keys = app.extensions["tasker"].keys
    tag = uuid.uuid4().hex[:6]
    alice, bob, admin = (
        {"X-API-Key": keys.create(f"{who}-{tag}", admin=(who == "admin"))[1]}
        for who in ("alice", "bob", "admin")
    )
    client = app.test_client()
    for n in range(3):
        body = {"name": "sum", "parameters": {"a": n, "b": 1}, "countdown": 600}
        assert client.post("/api/v1/tasks", json=body, headers=alice).status_code == 202
    mine = client.get("/api/v1/queues", headers=alice).get_json()["totals"]
    theirs = client.get("/api/v1/queues", headers=bob).get_json()["totals"]
    everyone = client.get("/api/v1/queues", headers=admin).get_json()["totals"]
    assert mine["SCHEDULED"] == 3 and sum(theirs.values()) == 0 and everyone["SCHEDULED"] >= 3
    app.extensions["tasker"].db.dispose()


def test_the_webhooks_queue_is_in_the_report_with_its_deliveries(idle_app):
    """A backlog of deliveries is seen: QUEUED ones are the `webhooks` queue's pending."""
    tasker = idle_app.extensions["tasker"]
    owner = f"hooks-{uuid.uuid4().hex[:8]}"
    task_id = insert_task(tasker.db, owner=owner)
    hook = {"url": "https://example.com/hook", "events": ["completed"]}
    tasker.db.run(lambda c: webhook_model.record(c, task_id, owner, hook, "COMPLETED"))
    webhooks = by_name(tasker.monitor.queue_stats(owner))["webhooks"]
    assert (webhooks["messages_waiting"], webhooks["pending"], webhooks["started"]) == (0, 1, 0)
    assert webhooks["oldest_pending_age_seconds"] >= 0
    listed = idle_app.test_client().get("/api/v1/queues").get_json()
    assert [queue["name"] for queue in listed["queues"]] == ["default", "external_api", "webhooks"]
