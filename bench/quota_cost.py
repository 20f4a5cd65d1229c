"""What the unfinished-tasks quota costs a submit, on PostgreSQL.

Fills a throwaway database with ROWS unfinished tasks of one owner (and as many finished ones of
another), then measures: one COUNT of that owner's unfinished tasks (what each API process runs
at most once a second per owner), and the mean time of UnfinishedTasks.admit() over CALLS calls
in a row, COUNTs included, against a limit it never reaches.

Usage: python bench/quota_cost.py [--rows 100000] [--calls 200000]
"""

import argparse
import statistics
import time

import sqlalchemy as sa
from harness import database

from app.core.database_manager import DatabaseManager
from app.core.quotas import UnfinishedTasks
from app.models import task as task_model

FILL = """
INSERT INTO tasks (id, name, parameters, status, queue, owner, created_at, updated_at)
SELECT gen_random_uuid(), 'sum_two_numbers', '{"a": 1, "b": 2}', :status, 'default', :owner, now(), now()
FROM generate_series(1, :rows)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    with database() as url:
        db = DatabaseManager(url)
        db.run(lambda c: c.execute(sa.text(FILL), {"status": "PENDING", "owner": "busy", "rows": args.rows}))
        db.run(
            lambda c: c.execute(sa.text(FILL), {"status": "COMPLETED", "owner": "other", "rows": args.rows})
        )
        db.run(lambda c: c.exec_driver_sql("ANALYZE tasks"))
        counts = []
        for _ in range(20):
            start = time.perf_counter()
            db.run(lambda c: task_model.count_unfinished(c, "busy"))
            counts.append((time.perf_counter() - start) * 1000)
        quota = UnfinishedTasks(db, limit=10**9, refresh_seconds=1.0)
        start = time.perf_counter()
        for _ in range(args.calls):
            quota.admit("busy")
        elapsed = time.perf_counter() - start
        db.dispose()
    print(
        f"quota: COUNT of {args.rows:,} unfinished rows {statistics.median(counts):.1f} ms median "
        f"(once a second per owner and process); admit() {elapsed / args.calls * 1e6:.2f} us per submit "
        f"over {args.calls:,} calls in {elapsed:.1f} s, COUNTs included"
    )


if __name__ == "__main__":
    main()
