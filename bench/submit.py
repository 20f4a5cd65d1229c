"""POST /run-task at 16 connections: Tasker against a plain Flask endpoint, same gunicorn settings.

Starts Tasker under gunicorn (gunicorn.conf.py, 4 processes) on a throwaway PostgreSQL
database and a private redis-server, and bench/plain_app.py the same way; runs wrk on each
for SECONDS (after a 2 s warm-up) and prints one line: requests/s, p50, p99, errors, and the
ratio Tasker/limit. No worker runs: the messages wait in the private Redis.

With --keys, Tasker runs as it would on a network: AUTH_MODE=keys, rate limits on (in Redis),
the unfinished-tasks quota on, and every request carries an API key whose own rate limit is
high enough never to refuse one; the figure is then the cost of checking them.

Usage: python bench/submit.py [--seconds 10] [--keys]
"""

import argparse
import subprocess
import sys

from harness import BODY, ROOT, stack, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--keys", action="store_true", help="API keys, rate limits and quotas on")
    args = parser.parse_args()
    seconds = args.seconds
    with stack() as s:
        headers: dict[str, str] = {}
        if args.keys:
            s.env.update(
                {"AUTH_MODE": "keys", "RATE_LIMIT_ENABLED": "true", "QUOTA_UNFINISHED_TASKS": "100000000"}
            )
            subprocess.run(
                [sys.executable, "init_db.py"], cwd=ROOT, env=s.env, check=True, capture_output=True
            )
            made = subprocess.run(
                [sys.executable, "-m", "flask", "--app", "run", "keys", "create", "--name", "bench",
                 "--rate-limit", "1000000/second"],
                cwd=ROOT, env=s.env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            headers["Authorization"] = f"Bearer {made.stdout.strip()}"
        tasker = s.gunicorn("run:app", "/health")
        plain = s.gunicorn("bench.plain_app:app", "/get-task-output?task_uuid=x")
        results = {}
        for name, port in (("Tasker", tasker), ("plain Flask", plain)):
            url = f"http://127.0.0.1:{port}/run-task"
            wrk(url, min(2, seconds), "POST", BODY, headers)  # warm-up: pools, imports, caches
            results[name] = wrk(url, seconds, "POST", BODY, headers)
    ratio = results["Tasker"].requests_per_second / results["plain Flask"].requests_per_second
    mode = "keys+limits" if args.keys else "open"
    tasker, plain = results["Tasker"], results["plain Flask"]
    print(f"submit ({mode}): Tasker {tasker} | plain Flask {plain} | ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
