"""Memory under load: the RSS of every gunicorn worker and every Celery pool child after
N tasks, and again after N more (growth means a leak).

Starts Tasker as bench/e2e.py does (gunicorn.conf.py with 4 processes, one Celery worker of 2
prefork processes, a throwaway PostgreSQL database, a private redis-server), submits N sum
tasks over HTTP at 16 connections (wrk), waits until all are COMPLETED and reads each process's
VmRSS from /proc; then once more. Prints one line: the largest RSS of each kind after each
round, and the growth.

Usage: python bench/memory.py [--tasks 10000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness import stack, tasker


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(n) for n in path.read_text().split()] if path.exists() else []


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def largest(pids: list[int]) -> float:
    return max(rss_mb(pid) for pid in pids)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10000)
    tasks = parser.parse_args().tasks
    rounds = []
    # Pool children are never recycled here (they are after 10,000 tasks in production), so a
    # leak would show as growth rather than be reset by a fresh child.
    with stack() as s, tasker(s, ("--max-tasks-per-child=1000000",)) as t:
        for _ in (1, 2):
            t.wait_completed(t.submit(tasks))
            web, pool_children = children(t.gunicorn.pid), children(t.worker.pid)
            rounds.append((largest(web), largest(pool_children), web, pool_children))
    (web1, child1, webs1, children1), (web2, child2, webs2, children2) = rounds
    same = "same processes" if (webs1, children1) == (webs2, children2) else "processes were replaced"
    print(
        f"memory: after {tasks} tasks: gunicorn worker max {web1:.1f} MB ({len(webs1)} processes), "
        f"Celery pool child max {child1:.1f} MB ({len(children1)} processes) | after {2 * tasks}: "
        f"gunicorn {web2:.1f} MB ({web2 - web1:+.1f}), "
        f"pool child {child2:.1f} MB ({child2 - child1:+.1f}); {same}"
    )


if __name__ == "__main__":
    main()
