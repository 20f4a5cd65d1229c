"""Latency of GET /api/v1/tasks on a large table (PostgreSQL).

Creates a throwaway database, fills it with ROWS tasks spread over 30 days
(statuses and names mixed), and times, through the app in process:
  - the first page, unfiltered;
  - a first page filtered by status, and one filtered by name;
  - a deep page: the cursor of the row half-way through the table;
  - first pages filtered by tag (?tag=): a rare tag (one customer's: 0.06 % of the rows), a
    common one (env:prod, 30 %), both ANDed, and one no row carries.
Prints the median and p95 of each over REPEAT requests, then drops the database.

Usage: python bench/list_latency.py [--rows 1000000] [--repeat 50]
       (PostgreSQL from TEST_POSTGRES_URL, default postgresql://postgres@127.0.0.1:5432/postgres)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app import create_app
from app.core.database_manager import normalize_url
from app.core.resources import encode_cursor
from app.models.migrate import upgrade
from config import load_config

ADMIN_URL = normalize_url(
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
FILL = """
INSERT INTO tasks (id, name, parameters, status, result, attempts, queue, priority, created_at, updated_at,
                   tags)
SELECT gen_random_uuid(),
       (ARRAY['sum_two_numbers', 'find_longest_consecutive_letters', 'query_chatgpt'])[1 + i % 3],
       '{"a": 1, "b": 2}'::jsonb,
       (ARRAY['COMPLETED', 'COMPLETED', 'COMPLETED', 'COMPLETED', 'FAILED', 'PENDING',
              'CANCELLED'])[1 + i % 7],
       '3'::jsonb, 1, 'default', 5,
       now() - make_interval(secs => (:rows - i) * (30 * 86400.0 / :rows)),
       now(),
       CASE WHEN i % 5 < 3
            THEN jsonb_build_array('customer:c' || (i % 1000),
                                   CASE WHEN i % 2 = 0 THEN 'env:prod' ELSE 'env:test' END)
       END
FROM generate_series(1, :rows) AS i
"""


def fill(engine: sa.Engine, rows: int) -> None:
    """Migrate, insert `rows` tasks (FILL's mix) and VACUUM ANALYZE; prints how long it took."""
    upgrade(engine)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(sa.text(FILL), {"rows": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE tasks"))
    print(f"filled {rows} rows in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def timed(client, url: str, repeat: int) -> tuple[float, float, int]:
    latencies = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(url)
        latencies.append(time.perf_counter() - start)
        assert response.status_code == 200, response.get_json()
    latencies.sort()
    count = len(response.get_json()["tasks"])
    return statistics.median(latencies) * 1000, latencies[int(0.95 * (len(latencies) - 1))] * 1000, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    name = f"tasker_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        engine = sa.create_engine(url)
        fill(engine, args.rows)
        with engine.connect() as conn:
            middle = conn.execute(
                sa.text(
                    "SELECT created_at, id FROM tasks ORDER BY created_at DESC, id DESC OFFSET :n LIMIT 1"
                ),
                {"n": args.rows // 2},
            ).one()
        engine.dispose()

        env = {
            "DATABASE_URL": url,
            "TASKER_DATA_DIR": f"/tmp/{name}",
            "LOG_LEVEL": "WARNING",
            "AUTH_MODE": "open",  # every row belongs to the owner "default", as in open mode
            "RATE_LIMIT_ENABLED": "false",
        }
        app = create_app("production", load_config("production", env))
        client = app.test_client()
        cases = {
            "first page": "/api/v1/tasks?limit=50",
            "status=FAILED": "/api/v1/tasks?limit=50&status=FAILED",
            "name=query_chatgpt": "/api/v1/tasks?limit=50&name=query_chatgpt",
            f"deep page (row {args.rows // 2})": f"/api/v1/tasks?limit=50&cursor={encode_cursor(middle)}",
            "tag=customer:c42": "/api/v1/tasks?limit=50&tag=customer:c42",
            "tag=env:prod": "/api/v1/tasks?limit=50&tag=env:prod",
            "tag=customer:c42&tag=env:prod": "/api/v1/tasks?limit=50&tag=customer:c42&tag=env:prod",
            "tag=customer:nobody": "/api/v1/tasks?limit=50&tag=customer:nobody",
        }
        figures = []
        for label, path in cases.items():
            median, p95, count = timed(client, path, args.repeat)
            figures.append(f"{label}: median {median:.1f} ms, p95 {p95:.1f} ms ({count} rows)")
        app.extensions["tasker"].db.dispose()
        print(f"list on {args.rows} rows, {args.repeat} requests each: " + "; ".join(figures))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
