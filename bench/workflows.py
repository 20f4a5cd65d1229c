"""Workflows on PostgreSQL + Redis: how long a step waits for its parent (the parent's terminal
write to the child's claim, both by the database's clock), a 10-step chain end to end against
ten times one task's submit-to-COMPLETED, and a map's expansion over 1,000 items (at submit, and
at run time: the parent's ending, which writes the 1,000 rows, to the first item's start).

Tasker runs under gunicorn with one Celery worker of 2 prefork processes on a throwaway database
and a private redis-server (bench/harness.py). Chains run one at a time, so each figure is the
hand-off itself, not a queue.

Usage: python bench/workflows.py [--chains 200] [--long 10] [--items 1000]
"""

import argparse
import itertools
import json
import os
import statistics
import time
import urllib.request

import sqlalchemy as sa
from harness import stack, tasker, wait_until


def post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.load(answer)


def chain(length: int) -> dict:
    steps = [{"id": "s0", "task": "sum", "parameters": {"a": 1, "b": 1}}]
    for i in range(1, length):
        steps.append(
            {
                "id": f"s{i}",
                "task": "sum",
                "after": [f"s{i - 1}"],
                "parameters": {"a": {"$step": f"s{i - 1}"}, "b": 1},
            }
        )
    return {"name": f"chain-{length}", "steps": steps}


def finished(engine, workflow_id: str) -> bool:
    with engine.connect() as conn:
        status = conn.scalar(sa.text("SELECT status FROM workflows WHERE id = :id"), {"id": workflow_id})
    return status == "COMPLETED"


def handoffs(engine, workflow_id: str) -> list[float]:
    query = sa.text(
        "SELECT step, started_at, completed_at FROM tasks WHERE workflow_id = :id ORDER BY started_at"
    )
    with engine.connect() as conn:
        rows = list(conn.execute(query, {"id": workflow_id}))
    return [(b.started_at - a.completed_at).total_seconds() * 1000 for a, b in itertools.pairwise(rows)]


def end_to_end(engine, table: str, row_id: str) -> float:
    with engine.connect() as conn:
        created, completed = conn.execute(
            sa.text(f"SELECT created_at, completed_at FROM {table} WHERE id = :id"), {"id": row_id}
        ).one()
    return (completed - created).total_seconds() * 1000


def run(t, chains: int, long: int) -> None:
    waits = []
    for _ in range(chains):
        workflow = post(t.base, "/api/v1/workflows", chain(2))
        wait_until(lambda w=workflow: finished(t.engine, w["id"]), 30, "a chain of 2")
        waits += handoffs(t.engine, workflow["id"])
    waits.sort()
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    print(f"hand-off, parent COMPLETED to child STARTED: p50 {statistics.median(waits):.1f} ms, "
          f"p99 {p99:.1f} ms, max {waits[-1]:.1f} ms ({len(waits)} hand-offs; target p50 <= 15, p99 <= 60: "
          f"{'met' if statistics.median(waits) <= 15 and p99 <= 60 else 'MISSED'})")  # fmt: skip
    singles = []
    for _ in range(20):
        task = post(t.base, "/api/v1/tasks", {"name": "sum", "parameters": {"a": 1, "b": 1}})
        wait_until(
            lambda i=task["id"]: t.count(f"WHERE id = '{i}' AND status = 'COMPLETED'") == 1, 30, "a task"
        )
        singles.append(end_to_end(t.engine, "tasks", task["id"]))
    totals = []
    for _ in range(10):
        workflow = post(t.base, "/api/v1/workflows", chain(long))
        wait_until(lambda w=workflow: finished(t.engine, w["id"]), 60, f"a chain of {long}")
        totals.append(end_to_end(t.engine, "workflows", workflow["id"]))
    single, total = statistics.median(singles), statistics.median(totals)
    budget = long * single + 100
    verdict = "met" if total <= budget else "MISSED"
    print(f"one task submit to COMPLETED: median {single:.1f} ms; a chain of {long}: median {total:.1f} ms "
          f"(target <= {long} x {single:.1f} + 100 = {budget:.1f} ms: {verdict})")  # fmt: skip


def fan_out(t, items: int) -> None:
    """A map over `items` items: the submit that writes them (a map over the input), and the
    release that writes them at run time (a map over a parent's result)."""
    over_input = {
        "name": "fan-in",
        "input": {"keys": [f"{n:04}.jpg" for n in range(items)]},
        "steps": [
            {
                "id": "resize",
                "task": "resize_image",
                "map": {"over": {"$input": "/keys"}, "max_items": items, "max_parallel": 20},
                "parameters": {"key": {"$item": ""}},
            }
        ],
    }
    submits = []
    for _ in range(3):
        began = time.perf_counter()
        workflow = post(t.base, "/api/v1/workflows", over_input)
        submits.append((time.perf_counter() - began) * 1000)
        wait_until(lambda w=workflow: finished(t.engine, w["id"]), 120, f"a map of {items}")
    at_run = {
        "name": "fan-out",
        "steps": [
            {"id": "list", "task": "list_objects", "parameters": {"bucket": "b", "count": items}},
            {
                "id": "resize",
                "task": "resize_image",
                "after": ["list"],
                "map": {"over": {"$step": "list", "path": "/keys"}, "max_items": items, "max_parallel": 20},
                "parameters": {"key": {"$item": ""}},
            },
        ],
    }
    releases = []
    for _ in range(3):
        workflow = post(t.base, "/api/v1/workflows", at_run)
        wait_until(lambda w=workflow: finished(t.engine, w["id"]), 120, f"a map of {items}")
        query = sa.text(
            "SELECT (SELECT completed_at FROM tasks WHERE workflow_id = :id AND step = 'list'),"
            " (SELECT min(started_at) FROM tasks WHERE workflow_id = :id AND step LIKE 'resize[%')"
        )
        with t.engine.connect() as conn:
            ended, first = conn.execute(query, {"id": workflow["id"]}).one()
        releases.append((first - ended).total_seconds() * 1000)
    worst = max(max(submits), max(releases))
    print(f"a map over {items} items: submit (writes them) median {statistics.median(submits):.0f} ms; "
          f"parent COMPLETED to first item STARTED (writes them) median {statistics.median(releases):.0f} ms "
          f"(target <= 1000 ms: {'met' if worst <= 1000 else 'MISSED'}, worst {worst:.0f} ms)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chains", type=int, default=200)
    parser.add_argument("--long", type=int, default=10)
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    os.environ["TASKER_TASK_MODULES"] = "mytasks"  # list_objects and resize_image (examples/mytasks)
    with stack() as s, tasker(s) as t:
        run(t, args.chains, args.long)
        fan_out(t, args.items)


if __name__ == "__main__":
    main()
