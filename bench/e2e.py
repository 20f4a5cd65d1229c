"""Submit N sum tasks over HTTP at 16 connections (wrk) and wait until all are COMPLETED: tasks/s.
Then the same work on a bare Celery app with the same worker settings (the limit): N tasks
published from 16 threads, each counting itself done in Redis. Prints both and the ratio.

Tasker runs under gunicorn (4 processes) with one Celery worker of 2 prefork processes, on a
throwaway PostgreSQL database and a private redis-server; the bare app gets the same worker.

Each runs with its own defaults: Tasker's settings (APP_ENV=production: JSON lines at INFO, task
events on) unless --log-level says otherwise, Celery's worker at WARNING.

Usage: python bench/e2e.py [--tasks 5000] [--log-level INFO]
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import redis
from harness import CONNECTIONS, stack, tasker, wait_until


def run_tasker(s, tasks: int) -> float:
    with tasker(s) as t:
        start = time.perf_counter()
        accepted = t.submit(tasks)
        t.wait_completed(accepted)
        return accepted / (time.perf_counter() - start)


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
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="Tasker's LOG_LEVEL (INFO, the default, logs every request and task)",
    )
    args = parser.parse_args()
    tasks = args.tasks
    with stack(args.log_level) as s:
        tasker = run_tasker(s, tasks)
    with stack() as s:  # Celery's own default: a worker logs at WARNING
        bare = run_bare(s, tasks)
    figures = f"Tasker {tasker:.0f} tasks/s | bare Celery {bare:.0f} tasks/s"
    print(f"e2e: {figures} | ratio {tasker / bare:.2f} ({tasks} tasks, LOG_LEVEL={args.log_level})")


if __name__ == "__main__":
    main()
