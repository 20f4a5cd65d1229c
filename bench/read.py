"""GET /get-task-output at 16 connections: a finished task (served from the cache) and a
running one (read from PostgreSQL), against a plain Flask endpoint with the same gunicorn
settings.

Starts Tasker under gunicorn on a throwaway database and a private redis-server, a worker to
finish one sum task, and a process_data task that runs through the measurement; prints one
line: each figure and the ratio of each to the limit.

Usage: python bench/read.py [--seconds 10]
"""

import argparse
import time

import requests
from harness import stack, wrk


def wait_for(session: requests.Session, url: str, statuses: set[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while session.get(url).json()["task_output"]["status"] not in statuses:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {url} to be {statuses}")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    seconds = parser.parse_args().seconds
    with stack() as s, requests.Session() as http:
        tasker = s.gunicorn("run:app", "/health")
        plain = s.gunicorn("bench.plain_app:app", "/get-task-output?task_uuid=x")
        s.celery_worker("celery_worker.celery", concurrency=2)
        base = f"http://127.0.0.1:{tasker}"
        done = http.post(f"{base}/run-task", json={"task_name": "sum", "task_parameters": {"a": 1, "b": 2}})
        done_url = f"{base}/get-task-output?task_uuid={done.json()['task_uuid']}"
        wait_for(http, done_url, {"COMPLETED"})
        body = {"task_name": "process_data", "task_parameters": {"duration_seconds": 3 * seconds + 60}}
        running = http.post(f"{base}/run-task", json=body).json()["task_uuid"]
        running_url = f"{base}/get-task-output?task_uuid={running}"
        wait_for(http, running_url, {"STARTED"})
        plain_url = f"http://127.0.0.1:{plain}/get-task-output?task_uuid={running}"
        results = {}
        for name, url in (("cached", done_url), ("running", running_url), ("plain Flask", plain_url)):
            wrk(url, min(2, seconds))  # warm-up
            results[name] = wrk(url, seconds)
        http.post(f"{base}/api/v1/tasks/{running}/cancel")
    limit = results["plain Flask"].requests_per_second
    ratios = {name: results[name].requests_per_second / limit for name in ("cached", "running")}
    print(
        f"read: finished (cache) {results['cached']} | running (database) {results['running']} | "
        f"plain Flask {results['plain Flask']} | ratio cached {ratios['cached']:.2f}, "
        f"running {ratios['running']:.2f}"
    )


if __name__ == "__main__":
    main()
