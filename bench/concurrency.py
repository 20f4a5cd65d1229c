"""Flow control on PostgreSQL + Redis: concurrency keys (app/core/concurrency.py) and bulk submits.

- Slot release to the next task's start: 200 tasks of one key with limit 1, run by one worker
  of 2 processes; for each task after the first, its started_at minus the completed_at of the
  one before (the ending's transaction admits it, the worker claims it), by the database's
  clock. Target p99 <= 20 ms.
- Submit throughput, POST /api/v1/tasks at 16 connections under gunicorn (4 processes, no worker
  running): without a key (group-committed, and SUBMIT_BATCH_MAX=1), with 1,000 keys (limit 2,
  the key a parameter that varies per request), and with one key for every submit (each waits
  its turn on the key's lock), in ROUNDS interleaved rounds, medians. Target: with a key >= 0.8
  of without.
- Bulk submit: 1,000 tasks in one POST /api/v1/tasks/bulk against 1,000 POST /api/v1/tasks one
  after another on one connection.

Usage: python bench/concurrency.py [--tasks 200] [--seconds 8] [--rounds 3] [--bulk 1000]
"""

import argparse
import http.client
import itertools
import json
import statistics
import time
import urllib.request

import sqlalchemy as sa
from harness import V1_BODY, stack, tasker, wait_until, wrk

KEYED = {
    "name": "sum_two_numbers",
    "parameters": {"a": 1, "b": 2},
    "concurrency": {"key": "global", "limit": 1},
}
# 1,000 keys: the parameter `a` (the key) varies per request, from wrk's own counter.
MANY_KEYS = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"name": "sum_two_numbers", "parameters": {"a": %d, "b": 2}, '
    .. '"concurrency": {"key": {"$param": "/a"}, "limit": 2}}', counter % 1000)
  return wrk.format(nil, nil, nil, body)
end
"""


def post(base: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + "/api/v1/tasks", json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def release(t, count: int) -> None:
    ids = [post(t.base, KEYED)["id"] for _ in range(count)]
    query = sa.text(
        "SELECT started_at, completed_at FROM tasks WHERE id::text = ANY(:ids) ORDER BY started_at"
    )
    wait_until(lambda: t.count("WHERE status = 'COMPLETED'") >= count, 120, f"{count} tasks of one key")
    with t.engine.connect() as conn:
        rows = list(conn.execute(query, {"ids": ids}))
    gaps = sorted((b.started_at - a.completed_at).total_seconds() * 1000 for a, b in itertools.pairwise(rows))
    overlapping = sum(1 for gap in gaps if gap < 0)
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print(f"slot freed to next STARTED (one key, limit 1): p50 {statistics.median(gaps):.1f} ms, "
          f"p99 {p99:.1f} ms, max {gaps[-1]:.1f} ms over {len(gaps)} hand-offs; {overlapping} overlapping "
          f"runs (target p99 <= 20 ms: {'met' if p99 <= 20 and not overlapping else 'MISSED'})")  # fmt: skip


def throughput(s, seconds: float, rounds: int) -> None:
    batched = s.gunicorn("run:app", "/health", {"GUNICORN_CMD_ARGS": "--max-requests 0"})
    unbatched = s.gunicorn(
        "run:app", "/health", {"GUNICORN_CMD_ARGS": "--max-requests 0", "SUBMIT_BATCH_MAX": "1"}
    )
    runs = {
        "no key": (batched, V1_BODY, ""),
        "no key, unbatched": (unbatched, V1_BODY, ""),
        "1,000 keys": (batched, V1_BODY, MANY_KEYS),
        "one key": (batched, json.dumps(KEYED | {"concurrency": {"key": "global", "limit": 2}}), ""),
    }
    for port, body, lua in runs.values():  # warm-up: pools, caches, plans
        wrk(f"http://127.0.0.1:{port}/api/v1/tasks", min(2, seconds), "POST", body, connections=16, lua=lua)
    results: dict[str, list] = {name: [] for name in runs}
    for _ in range(rounds):  # interleaved, so a slow spell of the machine falls on every variant
        for name, (port, body, lua) in runs.items():
            url = f"http://127.0.0.1:{port}/api/v1/tasks"
            results[name].append(wrk(url, seconds, "POST", body, connections=16, lua=lua))
    median = {name: sorted(loads, key=lambda load: load.requests_per_second)[len(loads) // 2]
              for name, loads in results.items()}  # fmt: skip
    plain = median["no key"].requests_per_second
    for name, load in median.items():
        spread = ", ".join(f"{one.requests_per_second:.0f}" for one in results[name])
        print(f"submit, {name}: median of {rounds} {load} ({load.requests_per_second / plain:.2f} of no key; "
              f"runs {spread} req/s)")  # fmt: skip
    ratio = median["1,000 keys"].requests_per_second / plain
    print(f"with a key vs without: {ratio:.2f} (target >= 0.8: {'met' if ratio >= 0.8 else 'MISSED'})")


def bulk(t, count: int) -> None:
    """`count` submits in one POST /api/v1/tasks/bulk against `count` POST /api/v1/tasks one after
    another on one keep-alive connection (3 rounds each, medians)."""
    port = int(t.base.rsplit(":", 1)[1])
    body = {"name": "sum_two_numbers", "parameters": {"a": 1, "b": 2}}
    one_by_one, at_once = [], []
    for _ in range(3):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        began = time.perf_counter()
        for _ in range(count):
            connection.request(
                "POST", "/api/v1/tasks", json.dumps(body), {"Content-Type": "application/json"}
            )
            connection.getresponse().read()
        one_by_one.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        connection.request("POST", "/api/v1/tasks/bulk", json.dumps({"tasks": [body] * count}),
                           {"Content-Type": "application/json"})  # fmt: skip
        answer = json.loads(connection.getresponse().read())
        at_once.append((time.perf_counter() - began) * 1000)
        assert answer["submitted"] == count, answer
        connection.close()
    single, many = statistics.median(one_by_one), statistics.median(at_once)
    print(f"{count} submits: one request (bulk) median {many:.0f} ms; {count} requests one after another "
          f"median {single:.0f} ms ({single / many:.1f} x)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bulk", type=int, default=1000)
    args = parser.parse_args()
    with stack() as s:
        with tasker(s) as t:
            release(t, args.tasks)
            bulk(t, args.bulk)
            t.worker.kill()  # the submits below are measured with no task running beside them
            t.worker.wait()
        throughput(s, args.seconds, args.rounds)


if __name__ == "__main__":
    main()
