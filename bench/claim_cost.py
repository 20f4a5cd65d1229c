"""What the paused-queue check costs a worker's claim, on PostgreSQL.

The claim (app/models/task.py, _CLAIM) starts a task only if its queue is not paused, read in the
same statement. This claims CLAIMS rows one transaction each, as a worker does, with Tasker's claim
and with the same statement without the check, in alternating rounds, and prints the mean of each.

Usage: python bench/claim_cost.py [--claims 3000] [--rounds 3]
"""

import argparse
import statistics
import time
import uuid

import sqlalchemy as sa
from harness import database

from app.core.database_manager import normalize_url
from app.models import task as task_model

tasks = task_model.tasks
UNCHECKED = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("claim_id"), tasks.c.status.in_(["PENDING", "RETRYING"]))
    .values(
        status="STARTED",
        attempts=tasks.c.attempts + 1,
        started_at=task_model.utcnow(),
        **task_model.touched(),
        worker=sa.bindparam("claim_worker", type_=tasks.c.worker.type),
    )
    .returning(tasks.c.attempts, tasks.c.name)
)


def claims(engine: sa.Engine, statement: sa.Update, count: int) -> float:
    """The mean time of one claim, in microseconds, over `count` fresh PENDING rows."""
    ids = [uuid.uuid4() for _ in range(count)]
    rows = [
        {"id": i, "name": "sum_two_numbers", "parameters": {}, "status": "PENDING", "queue": "default"}
        for i in ids
    ]
    with engine.begin() as conn:
        conn.execute(tasks.insert(), rows)
    start = time.perf_counter()
    for task_id in ids:
        with engine.begin() as conn:
            assert conn.execute(statement, {"claim_id": task_id, "claim_worker": "bench"}).first()
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--claims", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    checked, unchecked = [], []
    with database() as url:
        engine = sa.create_engine(normalize_url(url))  # migrated by the harness
        for _ in range(args.rounds):
            checked.append(claims(engine, task_model._CLAIM, args.claims))
            unchecked.append(claims(engine, UNCHECKED, args.claims))
        engine.dispose()
    with_check, without = statistics.median(checked), statistics.median(unchecked)
    print(
        f"claim: {with_check:.0f} us with the paused-queue check, {without:.0f} us without "
        f"(+{with_check - without:.0f} us, median of {args.rounds} rounds of {args.claims:,} claims)"
    )


if __name__ == "__main__":
    main()
