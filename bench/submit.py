"""POST /run-task at 16 connections: Tasker against a plain Flask endpoint, same gunicorn settings.

Starts Tasker under gunicorn (gunicorn.conf.py, 4 processes) on a throwaway PostgreSQL
database and a private redis-server, and bench/plain_app.py the same way; runs wrk on each
for SECONDS (after a 2 s warm-up) and prints one line: requests/s, p50, p99, errors, and the
ratio Tasker/limit. No worker runs: the messages wait in the private Redis.

Usage: python bench/submit.py [--seconds 10]
"""

import argparse

from harness import BODY, stack, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    seconds = parser.parse_args().seconds
    with stack() as s:
        tasker = s.gunicorn("run:app", "/health")
        plain = s.gunicorn("bench.plain_app:app", "/get-task-output?task_uuid=x")
        results = {}
        for name, port in (("Tasker", tasker), ("plain Flask", plain)):
            url = f"http://127.0.0.1:{port}/run-task"
            wrk(url, min(2, seconds), "POST", BODY)  # warm-up: pools, imports, caches
            results[name] = wrk(url, seconds, "POST", BODY)
    ratio = results["Tasker"].requests_per_second / results["plain Flask"].requests_per_second
    print(f"submit: Tasker {results['Tasker']} | plain Flask {results['plain Flask']} | ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
