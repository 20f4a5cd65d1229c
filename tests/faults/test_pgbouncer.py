"""PgBouncer in transaction mode between Tasker and PostgreSQL (docs/scaling.md).

The API and the workers connect through it; beat connects to PostgreSQL itself, because its
scheduler lock is a session advisory lock, which transaction pooling cannot keep on one server
connection. Many client connections then share a few server connections, and every task ends as
it does without the pool.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import PG_ADMIN_URL, child_env, unavailable
from tests.faults.conftest import Fault
from tests.support import free_port, poll, start_celery, stop_process

SERVER_POOL = 4  # server connections PgBouncer keeps per database and user


@pytest.fixture
def pgbouncer() -> Iterator[int]:
    """A pgbouncer of the test's own in front of the machine's PostgreSQL: its port."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        unavailable(
            "pgbouncer", FileNotFoundError("pgbouncer (Debian package pgbouncer; .ci/run installs it)")
        )
    server = make_url(PG_ADMIN_URL)
    directory = Path(tempfile.mkdtemp(prefix="tasker-pgbouncer-"))
    port = free_port()
    (directory / "pgbouncer.ini").write_text(
        f"[databases]\n* = host={server.host} port={server.port} user={server.username}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = any\nadmin_users = {server.username}\npool_mode = transaction\n"
        f"default_pool_size = {SERVER_POOL}\nmax_client_conn = 500\n"
        f"logfile = {directory}/pgbouncer.log\n"
    )
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        shutil.chown(directory, "postgres", "postgres")
        command = ["runuser", "-u", "postgres", "--", *command]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def listening() -> bool:
        assert process.poll() is None, (directory / "pgbouncer.log").read_text(errors="replace")
        with __import__("socket").socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    poll(listening, timeout=10, what="pgbouncer to listen")
    try:
        yield port
    finally:
        stop_process(process, timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def test_the_api_and_workers_through_pgbouncer_in_transaction_mode(real, pgbouncer):
    fault: Fault = real
    direct = fault.env["DATABASE_URL"]
    pooled = make_url(direct).set(host="127.0.0.1", port=pgbouncer).render_as_string(hide_password=False)
    fault.env["DATABASE_URL"] = pooled  # the API (fault.app) and the workers
    fault.start_worker("w1", concurrency=2, queues="default")
    fault.start_worker("w2", concurrency=2, queues="default")
    beat_env = child_env({**fault.env, "DATABASE_URL": direct})
    fault.processes.append(
        start_celery("beat", beat_env, fault.tmp / "beat.log", "--schedule", str(fault.tmp / "beat-schedule"))
    )
    client = fault.client
    ids = [fault.submit("sum", {"a": n, "b": 1}, client).get_json()["id"] for n in range(40)]
    slow = {"duration_seconds": 0.3, "record_count": 3}
    ids += [fault.submit("process_data", slow, client).get_json()["id"] for _ in range(6)]
    later = client.post("/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 1}, "countdown": 1})
    retried = client.post(
        "/api/v1/tasks",
        json={"name": "process_data", "parameters": {"duration_seconds": 0.05, "fail_at_percent": 0},
              "retry_policy": {"max_retries": 1}},
    )  # fmt: skip
    rows = fault.wait_terminal([*ids, later.get_json()["id"]], timeout=90)
    assert [row.status for row in rows] == ["COMPLETED"] * len(rows)
    assert [row.result for row in rows[:40]] == [n + 1 for n in range(40)]
    assert rows[40].progress == 100
    failed = fault.wait_terminal([retried.get_json()["id"]])[0]
    assert (failed.status, failed.attempts) == ("FAILED", 2)
    assert client.get("/health/ready").status_code == 200
    # Many clients (the API's pool, four pool processes, two worker main processes) shared a few
    # server connections: PgBouncer's own count (its admin console).
    database = make_url(direct).database
    console = psycopg2.connect(
        host="127.0.0.1", port=pgbouncer, dbname="pgbouncer", user=make_url(direct).username
    )
    console.autocommit = True
    with console.cursor() as cursor:
        cursor.execute("SHOW CLIENTS")
        columns = [c.name for c in cursor.description]
        clients = [
            row for row in cursor.fetchall() if dict(zip(columns, row, strict=True))["database"] == database
        ]
        cursor.execute("SHOW SERVERS")
        columns = [c.name for c in cursor.description]
        servers = [
            row for row in cursor.fetchall() if dict(zip(columns, row, strict=True))["database"] == database
        ]
    console.close()
    assert len(servers) <= SERVER_POOL < len(clients), (len(servers), len(clients))
    print(f"\nPgBouncer: {len(clients)} client connections on {len(servers)} server connections")
