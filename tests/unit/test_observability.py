"""Log lines, request ids, the scrape-time gauges, housekeeping reports and the statistics."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.core import logs
from app.core.errors import DatabaseUnavailable
from app.core.metrics import Snapshot
from app.core.monitor import Monitor
from app.models import ops
from app.models import task as task_model
from tests.support import REGISTRY, insert_task


def formatted(formatter: logging.Formatter, **extra) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"tasker.test.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.info("task %s done", "abc", extra=extra)
    return stream.getvalue()


def test_json_lines_carry_the_bound_context_and_the_lines_fields():
    with logs.bound(request_id="r-1", task_id="t-1", queue=None):
        line = json.loads(formatted(logs.formatter("json"), status="COMPLETED", duration_ms=1.5))
    assert line["message"] == "task abc done"
    assert (line["level"], line["request_id"], line["task_id"]) == ("INFO", "r-1", "t-1")
    assert (line["status"], line["duration_ms"]) == ("COMPLETED", 1.5)
    assert line["time"].endswith("+00:00") and line["logger"].startswith("tasker.test.")
    assert "queue" not in line  # None is not bound
    # Outside the block the context is gone.
    assert "request_id" not in json.loads(formatted(logs.formatter("json")))


def test_celerys_task_arguments_are_never_written():
    # celery.app.trace logs each outcome with `data` holding the task's args and kwargs (a prompt).
    line = json.loads(formatted(logs.formatter("json"), data={"kwargs": "{'prompt': 'secret text'}"}))
    assert "data" not in line and "secret text" not in json.dumps(line)


def test_text_lines_show_the_context_after_the_message():
    with logs.bound(request_id="r-2"):
        line = formatted(logs.formatter("text"), status=202)
    assert line.rstrip().endswith("task abc done [request_id=r-2 status=202]")


def test_the_context_is_per_thread():
    seen = {}

    def other():
        seen["other"] = logs.context()

    with logs.bound(request_id="main"):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen["other"] == {}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("bad id", False),
        ("<script>", False),
        ("", False),
    ],
)
def test_a_request_id_is_kept_only_when_sane(sent, kept, tmp_path):
    from app import create_app
    from config import load_config

    app = create_app("testing", load_config("testing", {"TASKER_DATA_DIR": str(tmp_path)}))
    answer = app.test_client().get("/health", headers={"X-Request-ID": sent})
    echoed = answer.headers["X-Request-ID"]
    assert (echoed == sent) is kept
    if not kept:
        assert len(echoed) == 32 and int(echoed, 16) >= 0


def test_metrics_token_guards_metrics(tmp_path):
    from app import create_app
    from config import load_config

    env = {"TASKER_DATA_DIR": str(tmp_path), "METRICS_TOKEN": "t" * 24}
    client = create_app("testing", load_config("testing", env)).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.get_json()["code"]
    assert refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 24}).status_code == 200
    off = create_app("testing", load_config("testing", {**env, "METRICS_ENABLED": "false"})).test_client()
    assert off.get("/metrics").status_code == 404


class SlowBroker:
    def __init__(self, release: threading.Event):
        self.release = release

    def queue_depths(self, queues):
        self.release.wait(5)
        return dict.fromkeys(queues, 0)


def test_a_source_that_does_not_answer_in_time_is_left_out_not_waited_for(sqlite_db):
    release = threading.Event()
    snapshot = Snapshot(sqlite_db, SlowBroker(release), ["default"], heartbeat_seconds=10, timeout=0.2)
    try:
        families = {family.name: family for family in snapshot.collect()}
    finally:
        release.set()
    assert "tasker_queue_messages" not in families
    up = {s.labels["source"]: s.value for s in families["tasker_metrics_source_up"].samples}
    assert up == {"database": 1, "broker": 0}
    assert families["tasker_workers_online"].samples[0].value == 0


def test_a_database_that_is_down_gives_no_row_gauges(mocker):
    db = mocker.Mock()
    db.run.side_effect = DatabaseUnavailable("connection refused")
    broker = mocker.Mock()
    broker.queue_depths.return_value = {"default": 3}
    families = {f.name: f for f in Snapshot(db, broker, ["default"], 10, timeout=1).collect()}
    assert "tasker_tasks" not in families
    assert families["tasker_queue_messages"].samples[0].value == 3


def test_workers_online_counts_fresh_heartbeats_only(sqlite_db):
    now = sqlite_db.run(task_model.database_now)
    sqlite_db.run(lambda c: ops.heartbeat(c, "w1@a", "default", now, {}))
    sqlite_db.run(lambda c: ops.heartbeat(c, "w2@b", "default", now, {}))
    sqlite_db.run(
        lambda c: c.execute(
            ops.workers.update()
            .where(ops.workers.c.hostname == "w2@b")
            .values(seen_at=now - timedelta(minutes=5))
        )
    )
    assert sqlite_db.run(lambda c: ops.workers_seen_since(c, now - timedelta(seconds=30))) == 1
    sqlite_db.run(lambda c: ops.remove_worker(c, "w1@a"))
    assert sqlite_db.run(lambda c: ops.workers_seen_since(c, now - timedelta(seconds=30))) == 0


def test_housekeeping_runs_add_up_and_a_stale_one_is_late(sqlite_db, mocker):
    sqlite_db.run(lambda c: ops.record_run(c, "recovery-sweep", 30, {"republished": 2, "requeued": 0}))
    sqlite_db.run(lambda c: ops.record_run(c, "recovery-sweep", 30, {"republished": 1, "failed": 1}))
    sqlite_db.run(lambda c: ops.record_run(c, "publish-due", 1, {"fired": 0, "released": 3}))
    runs = {run.job: run for run in sqlite_db.run(ops.housekeeping_runs)}
    assert runs["recovery-sweep"].runs == 2
    assert ops.totals_of(runs["recovery-sweep"]) == {"republished": 3, "requeued": 0, "failed": 1}
    # publish-due last ran 10 s ago: more than three of its 1 s intervals.
    sqlite_db.run(
        lambda c: c.execute(
            sa.update(ops.housekeeping)
            .where(ops.housekeeping.c.job == "publish-due")
            .values(last_run_at=runs["publish-due"].last_run_at - timedelta(seconds=10))
        )
    )
    monitor = Monitor(sqlite_db, mocker.Mock(), mocker.Mock(), REGISTRY)
    report = monitor.housekeeping({"publish-due": 1, "recovery-sweep": 30, "retention": 3600})
    assert report["publish-due"]["late"] is True and report["publish-due"]["age_seconds"] >= 10
    assert report["recovery-sweep"]["late"] is False
    assert report["retention"] == {"last_run": None, "interval_seconds": 3600, "late": True}


def test_stats_count_by_status_and_give_percentiles(sqlite_db, mocker):
    now = sqlite_db.run(task_model.database_now)
    for i, status in enumerate(["COMPLETED"] * 8 + ["FAILED"] * 2):
        task_id = insert_task(sqlite_db, "sum_two_numbers", {"a": 1, "b": 2}, status=status)
        values = {
            "created_at": now - timedelta(seconds=20),
            "started_at": now - timedelta(seconds=20 - i),  # waited i seconds
            "completed_at": now - timedelta(seconds=10 - i),  # ran 10 s
        }
        sqlite_db.run(
            lambda c, t=task_id, v=values: c.execute(
                task_model.tasks.update().where(task_model.tasks.c.id == t).values(**v)
            )
        )
    old = insert_task(sqlite_db, "sum_two_numbers", {"a": 1, "b": 2}, status="COMPLETED")
    sqlite_db.run(
        lambda c: c.execute(
            task_model.tasks.update()
            .where(task_model.tasks.c.id == old)
            .values(started_at=now - timedelta(hours=3), completed_at=now - timedelta(hours=2))
        )
    )
    stats = Monitor(sqlite_db, mocker.Mock(), mocker.Mock(), REGISTRY).stats(3600)
    sums = next(t for t in stats["task_types"] if t["task_type"] == "sum_two_numbers")
    assert sums["finished"] == {"COMPLETED": 8, "FAILED": 2, "CANCELLED": 0}
    assert (sums["total"], sums["failure_ratio"], sums["throughput_per_minute"]) == (
        10,
        0.2,
        round(10 / 60, 4),
    )
    assert sums["run_seconds"] == {"p50": 10.0, "p95": 10.0, "p99": 10.0}
    assert sums["wait_seconds"] == {"p50": 4.5, "p95": 8.55, "p99": 8.91}
    idle = next(t for t in stats["task_types"] if t["task_type"] == "weather")
    assert idle["total"] == 0 and idle["run_seconds"]["p50"] is None and idle["failure_ratio"] is None


def test_percentile_interpolates_like_postgresql():
    assert ops.percentile([1.0], 0.99) == 1.0
    assert ops.percentile([0.0, 10.0], 0.5) == 5.0
    assert ops.percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
