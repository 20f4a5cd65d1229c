"""The database drops connections or is locked (RELIABILITY.md scenario 6)."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_URL
from tests.faults.conftest import Fault, RedisServer, real_env
from tests.support import poll


def submit_many(fault: Fault, count: int) -> list[str]:
    client = fault.client
    return [
        fault.submit("process_data", {"duration_seconds": 0.3, "record_count": 10}, client).get_json()["id"]
        for _ in range(count)
    ]


def test_6_postgresql_connections_killed_while_tasks_run(real):
    fault = real
    fault.start_beat()
    fault.start_worker("w", concurrency=2)
    ids = submit_many(fault, 20)
    poll(lambda: sum(r.status == "COMPLETED" for r in fault.rows(ids)) >= 4, what="a few tasks done")
    database = make_url(fault.env["DATABASE_URL"]).database
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        killed = conn.scalar(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        )
    admin.dispose()
    assert killed >= 2  # the API's and the workers' pooled connections
    # The API replaces its dead connections without a restart; the workers do too.
    assert fault.client.get("/api/v1/tasks?limit=1").status_code == 200
    later = submit_many(fault, 5)
    rows = fault.wait_terminal(ids + later, timeout=90)
    assert [row.status for row in rows] == ["COMPLETED"] * 25
    assert all(row.attempts <= 2 for row in rows)


def test_6_sqlite_locked_by_another_writer_for_a_while(embedded):
    fault = embedded
    fault.start_beat()
    fault.start_worker("w", concurrency=2)
    ids = submit_many(fault, 10)
    path = make_url(fault.app.config["DATABASE_URL"]).database
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        conn = sqlite3.connect(path, timeout=15)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(10)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    try:
        assert locked.wait(10)
        submitter = threading.Thread(target=lambda: ids.extend(submit_many(fault, 3)))
        submitter.start()  # these submissions wait for the lock (busy timeout 15 s)
        time.sleep(3)  # the lock is held this long
    finally:
        release.set()
        holder.join()
    submitter.join(timeout=30)
    rows = fault.wait_terminal(ids, timeout=90)
    assert len(rows) == 13
    assert [row.status for row in rows] == ["COMPLETED"] * 13


@pytest.fixture
def on_private_postgres(private_postgres, tmp_path, openai_server):
    """The real stack on a PostgreSQL cluster and a Redis of the test's own."""
    server = RedisServer(tmp_path)
    server.start()
    fault = Fault("real", real_env(server, private_postgres.url, tmp_path, openai_server), tmp_path, server)
    try:
        yield fault, private_postgres
    finally:
        fault.close()
        server.stop()


def test_6_postgresql_restarted_while_tasks_run(on_private_postgres):
    fault, postgres = on_private_postgres
    fault.start_beat()
    fault.start_worker("w", concurrency=2)
    ids = submit_many(fault, 20)
    poll(lambda: sum(r.status == "COMPLETED" for r in fault.rows(ids)) >= 4, what="a few tasks done")
    postgres.stop()
    client = fault.client
    refused = fault.submit("sum", {"a": 1, "b": 2}, client)
    assert refused.status_code == 503 and refused.get_json()["details"]["dependency"] == "database"
    ready = client.get("/health/ready")
    assert ready.status_code == 503 and "the database" in ready.get_json()["error"]
    time.sleep(3)  # PostgreSQL stays down this long
    postgres.start()
    poll(lambda: client.get("/health/db").status_code == 200, timeout=30, what="the API to see it back")
    later = submit_many(fault, 5)
    rows = fault.wait_terminal(ids + later, timeout=120)
    assert [row.status for row in rows] == ["COMPLETED"] * 25
