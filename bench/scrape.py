"""GET /metrics on a table of 1,000,000 tasks: what a Prometheus scrape costs.

Fills a throwaway PostgreSQL database with ROWS tasks (bench/list_latency.py's mix: mostly
COMPLETED, a seventh PENDING), starts Tasker under gunicorn (gunicorn.conf.py, 4 processes, a
private Redis as broker), and times REPEAT scrapes one after another: median, p95 and max, with
the page's size. Every gauge is computed at scrape time: task counts by status, the oldest
PENDING per queue, workers online, housekeeping, and the broker's queue depths.

Usage: python bench/scrape.py [--rows 1000000] [--repeat 50]
"""

import argparse
import statistics
import sys
import time

import requests
import sqlalchemy as sa
from harness import ROOT, stack

sys.path.insert(0, str(ROOT))
from app.core.database_manager import normalize_url
from bench.list_latency import fill


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with stack() as s:
        engine = sa.create_engine(normalize_url(s.env["DATABASE_URL"]))
        fill(engine, args.rows)
        engine.dispose()
        port = s.gunicorn("run:app", "/health")
        url = f"http://127.0.0.1:{port}/metrics"
        session = requests.Session()
        for _ in range(5):  # warm-up: every process's pools
            session.get(url, timeout=30)
        times = []
        for _ in range(args.repeat):
            begin = time.perf_counter()
            answer = session.get(url, timeout=30)
            times.append((time.perf_counter() - begin) * 1000)
            assert answer.status_code == 200, answer.text
            assert 'tasker_metrics_source_up{source="database"} 1.0' in answer.text, answer.text[-500:]
        times.sort()
        p95 = times[int(0.95 * (len(times) - 1))]
        print(
            f"scrape on {args.rows} rows, {args.repeat} scrapes: median {statistics.median(times):.1f} ms, "
            f"p95 {p95:.1f} ms, max {times[-1]:.1f} ms ({len(answer.content)} bytes)"
        )


if __name__ == "__main__":
    main()
