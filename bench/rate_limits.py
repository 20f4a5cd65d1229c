"""A cluster-wide rate limit on PostgreSQL + Redis (app/core/rate_limits.py): 10/second with a burst
of 10, consumed by three workers of 2 prefork processes each, beat publishing the tasks whose turn
has come.

Submits 10 + 10 * SECONDS tasks of `sum_two_numbers` (which TASK_LIMITS makes consume the limit) in
bulk, waits until all are COMPLETED, and prints from their start times: the most that started in
any 1 s window (target <= 10 + burst), the average over the whole run (target <= 10/s plus
burst / SECONDS) and the throughput (target >= 9.5/s).

Usage: python bench/rate_limits.py [--seconds 30]
"""

import argparse
import json
import urllib.request

import sqlalchemy as sa
from harness import stack, tasker

LIMIT = "bench-pace"


def call(method: str, url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method=method
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    count = 10 + 10 * args.seconds
    with stack() as s:
        s.env["TASK_LIMITS"] = f"sum_two_numbers={LIMIT}"
        with tasker(s) as t:
            for _ in range(2):  # three workers in all
                s.celery_worker("celery_worker.celery", concurrency=2)
            s.beat("celery_worker.celery")
            call("PUT", f"{t.base}/api/v1/limits/{LIMIT}", {"rate": "10/second", "burst": 10})
            body = {"name": "sum_two_numbers", "parameters": {"a": 1, "b": 2}}
            for start in range(0, count, 1000):
                call("POST", f"{t.base}/api/v1/tasks/bulk", {"tasks": [body] * min(1000, count - start)})
            t.wait_completed(count)
            with t.engine.connect() as conn:
                query = "SELECT extract(epoch FROM started_at) FROM tasks ORDER BY started_at"
                starts = [float(value) for value in conn.scalars(sa.text(query))]
    span = starts[-1] - starts[0]
    most = max(sum(1 for other in starts if start <= other < start + 1.0) for start in starts)
    print(
        f"rate limit 10/s, burst 10, 3 workers: {count} tasks over {span:.2f} s; at most {most} started "
        f"in a 1 s window (target <= 20); average {count / span:.2f}/s (target <= "
        f"{10 + 10 / args.seconds:.2f}); throughput {count / span:.2f}/s (target >= 9.5)"
    )


if __name__ == "__main__":
    main()
