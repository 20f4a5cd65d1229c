"""Submit N sum tasks over HTTP at 16 connections (wrk) and wait until all are COMPLETED: tasks/s.
Then the same work on a bare Celery app with the same worker settings (the limit): N tasks
published from 16 threads, each counting itself done in Redis. Prints both and the ratio.

Tasker runs under gunicorn (4 processes) with one Celery worker of 2 prefork processes, on a
throwaway PostgreSQL database and a private redis-server; the bare app gets the same worker.

Usage: python bench/e2e.py [--tasks 5000]
"""

import argparse
import os
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests
import sqlalchemy as sa
from harness import BODY, CONNECTIONS, stack, wait_until

from app.core.database_manager import normalize_url

# wrk sends the submissions: a Python HTTP client on these 2 cores could not keep up, and the
# figure would be the client's. Each of wrk's 2 threads stops sending once it has had its share
# of answers, and wrk is stopped once PostgreSQL holds N rows (it would run on otherwise); a
# few more may have been in flight, so the figure is the rows accepted over the time taken.
SUBMIT_N = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%(body)s]]
local answers, share = 0, %(share)d
function response(status, headers, body)
  answers = answers + 1
  if answers >= share then wrk.thread:stop() end
end
"""


def run_tasker(s, tasks: int) -> float:
    port = s.gunicorn("run:app", "/health")
    s.celery_worker("celery_worker.celery", concurrency=2)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{base}/health/ready").status_code == 200, 60, "a Tasker worker")
    engine = sa.create_engine(normalize_url(s.env["DATABASE_URL"]))

    def count(where: str = "") -> int:
        with engine.connect() as conn:
            return conn.scalar(sa.text(f"SELECT count(*) FROM tasks {where}"))

    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(SUBMIT_N % {"body": BODY, "share": -(-tasks // 2)})
    command = ["wrk", "-t2", f"-c{CONNECTIONS}", "-d600s", "-s", str(script), f"{base}/run-task"]
    start = time.perf_counter()
    wrk = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: count() >= tasks, 600, f"{tasks} submissions")
    finally:
        wrk.terminate()
        wrk.wait()
        script.unlink()
    accepted = count()
    wait_until(lambda: count("WHERE status = 'COMPLETED'") >= accepted, 600, f"{accepted} Tasker tasks")
    elapsed = time.perf_counter() - start
    engine.dispose()
    return accepted / elapsed


def run_bare(s, tasks: int) -> float:
    broker = s.env["CELERY_BROKER_URL"].rsplit("/", 1)[0] + "/2"
    counter_url = s.env["CELERY_BROKER_URL"].rsplit("/", 1)[0] + "/3"
    # celery reads CELERY_BROKER_URL from the environment before the app's own setting.
    urls = {"BARE_BROKER_URL": broker, "BARE_COUNTER_URL": counter_url, "CELERY_BROKER_URL": broker}
    s.env.update(urls)
    s.celery_worker("bench.bare_celery.app", concurrency=2)
    os.environ.update(urls)  # read when bare_celery is imported
    from bench.bare_celery import add

    counter = redis.Redis.from_url(counter_url)
    add.apply_async((0, 0))  # the worker is up once this one is done
    wait_until(lambda: int(counter.get("bare:done") or 0) >= 1, 60, "the bare worker")
    counter.set("bare:done", 0)
    start = time.perf_counter()
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        list(pool.map(lambda i: add.apply_async((i, 1)), range(tasks)))
    wait_until(lambda: int(counter.get("bare:done") or 0) >= tasks, 600, f"{tasks} bare tasks")
    return tasks / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    tasks = parser.parse_args().tasks
    with stack() as s:
        tasker = run_tasker(s, tasks)
    with stack() as s:
        bare = run_bare(s, tasks)
    figures = f"Tasker {tasker:.0f} tasks/s | bare Celery {bare:.0f} tasks/s"
    print(f"e2e: {figures} | ratio {tasker / bare:.2f} ({tasks} tasks)")


if __name__ == "__main__":
    main()
