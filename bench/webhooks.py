"""Webhook deliveries per second to a local receiver.

Tasker under gunicorn (4 processes) on a throwaway PostgreSQL database and a private Redis.
N sum tasks with a webhook are submitted over HTTP (wrk, 16 connections) and run by a worker
that consumes `default` only, so their deliveries wait QUEUED on the `webhooks` queue; then a
worker of 2 prefork processes consumes `webhooks` alone, and the time until every delivery is
DELIVERED gives deliveries/s: each is a claim, a read of the task, a signed POST to the receiver
(a threaded HTTP server in this process answering 200 at once) and the attempt written with the
outcome in one transaction.

Usage: python bench/webhooks.py [--tasks 2000]
"""

import argparse
import json
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa
from harness import CONNECTIONS, SUBMIT_N, free_port, stack, wait_until

from app.core.database_manager import normalize_url

SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtb2YtMzItYnl0ZXM="


class Counter(BaseHTTPRequestHandler):
    received = 0
    lock = threading.Lock()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with Counter.lock:
            Counter.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    tasks = parser.parse_args().tasks
    receiver_port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", receiver_port), Counter)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with stack() as s:
        s.env.update(
            {"WEBHOOK_SECRET": SECRET, "WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
        )
        port = s.gunicorn("run:app", "/health")
        s.celery_worker("celery_worker.celery", concurrency=2, queues="default")
        engine = sa.create_engine(normalize_url(s.env["DATABASE_URL"]))

        def count(sql: str) -> int:
            with engine.connect() as conn:
                return conn.scalar(sa.text(sql))

        body = json.dumps(
            {
                "name": "sum",
                "parameters": {"a": 1, "b": 2},
                "webhook": {"url": f"http://127.0.0.1:{receiver_port}/hook"},
            }
        )
        submit(
            f"http://127.0.0.1:{port}/api/v1/tasks", body, tasks, lambda: count("SELECT count(*) FROM tasks")
        )
        total = count("SELECT count(*) FROM tasks")
        wait_until(
            lambda: count("SELECT count(*) FROM webhook_deliveries WHERE status = 'QUEUED'") >= total,
            600,
            f"{total} tasks to finish with their deliveries queued",
        )
        start = time.perf_counter()
        s.celery_worker("celery_worker.celery", concurrency=2, queues="webhooks")
        wait_until(
            lambda: count("SELECT count(*) FROM webhook_deliveries WHERE status = 'DELIVERED'") >= total,
            900,
            f"{total} deliveries",
        )
        seconds = time.perf_counter() - start  # includes the worker's start, about a second
        engine.dispose()
    server.shutdown()
    print(
        f"webhooks: {total / seconds:.0f} deliveries/s ({total} deliveries in {seconds:.1f} s, "
        f"worker start included; the receiver got {Counter.received})"
    )


def submit(url: str, body: str, tasks: int, rows) -> None:
    """POST the body about `tasks` times with wrk at 16 connections (as harness.Tasker.submit)."""
    target = rows() + tasks
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(SUBMIT_N % {"body": body, "share": -(-tasks // 2)})
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", "-d600s", "-s", str(script), url]
    wrk = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: rows() >= target, 600, f"{tasks} submissions")
    finally:
        wrk.terminate()
        wrk.wait()
        script.unlink()


if __name__ == "__main__":
    main()
