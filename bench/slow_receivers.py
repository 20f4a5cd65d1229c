"""Other owners' tasks while webhook receivers stall: the sums' latency, and how each stalled
delivery ends.

Tasker under gunicorn on a throwaway PostgreSQL database and a private Redis, with beat. Five
tasks whose webhook points at a tarpit (it answers `Content-Length: 100000`, then one byte every
2 s) and five at a receiver that accepts the connection and never answers; then 100 `sum` tasks
without a webhook, 10 a second, each timed from its row's created_at to its completed_at. At the
end every stalled delivery is read back: its status, its attempts, and how many are recorded.

The workers are the deployment's: a prefork worker of 2 processes for the tasks (`-X webhooks`)
and a threaded one for the `webhooks` queue (what `make run` and compose start). With
`--shared-pool`, one worker of 2 processes consumes both queues, as before deliveries had a
worker of their own.

Usage: python bench/slow_receivers.py [--shared-pool] [--sums 100] [--window 180] [--settle 90]
"""

import argparse
import json
import statistics
import time
import urllib.request

import sqlalchemy as sa
from harness import stack, wait_until

from app.core.database_manager import normalize_url
from tests.support import StallingReceiver

SECRET = "whsec_" + "YmVuY2gtd2ViaG9vay1zZWNyZXQtb2YtMzItYnl0ZXM="
RETRY_DELAYS = "1,1"  # three attempts, so the end is seen in a minute or two


def post(url: str, body: dict) -> str:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())["id"]


QUERY = """
SELECT d.status, d.attempts,
       (SELECT count(*) FROM webhook_attempts a WHERE a.delivery_id = d.id) AS recorded
FROM webhook_deliveries d WHERE d.task_id::text = ANY(:ids)
"""


def start_workers(s, shared_pool: bool) -> None:
    if shared_pool:
        s.celery_worker("celery_worker.celery", concurrency=2, queues="default,webhooks")
    else:
        s.celery_worker("celery_worker.celery", concurrency=2, queues="default")
        s.celery_worker("celery_worker.celery", concurrency=16, queues="webhooks", extra=("--pool=threads",))
    s.beat("celery_worker.celery")


def time_sums(base: str, count: int, window: float, rows) -> str:
    """`count` sums, 10 a second; each one's created_at to completed_at, a sum not done when
    the window closes counting as the whole window."""
    sums = []
    for n in range(count):
        sums.append(post(base, {"name": "sum", "parameters": {"a": n, "b": 1}}))
        time.sleep(0.1)  # pacing the load (10 a second), not waiting for a status
    closes = time.monotonic() + window
    done_sql = "SELECT count(*) FROM tasks WHERE status = 'COMPLETED' AND id::text = ANY(:ids)"
    while time.monotonic() < closes and rows(done_sql, ids=sums)[0][0] < len(sums):
        time.sleep(0.5)  # reading the count twice a second until every sum is done or the window closes
    finished = sorted(
        (r.completed_at - r.created_at).total_seconds()
        for r in rows("SELECT created_at, completed_at FROM tasks WHERE id::text = ANY(:ids)", ids=sums)
        if r.completed_at is not None
    )
    latencies = finished + [window] * (len(sums) - len(finished))
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return (
        f"{len(finished)} of {len(sums)} sums done within {window:.0f} s; "
        f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )


def settled(hooked: list[str], seconds: float, rows) -> str:
    """Each stalled delivery once all are FAILED, or when `seconds` have passed."""
    closes = time.monotonic() + seconds
    while time.monotonic() < closes:
        found = rows(QUERY, ids=hooked)
        if len(found) == len(hooked) and all(r.status == "FAILED" for r in found):
            break
        time.sleep(1)  # reading the deliveries' state once a second until the window closes
    return "; ".join(
        sorted(f"{r.status} attempts={r.attempts} recorded={r.recorded}" for r in rows(QUERY, ids=hooked))
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared-pool", action="store_true", help="one worker for tasks and deliveries")
    parser.add_argument("--sums", type=int, default=100)
    parser.add_argument("--window", type=float, default=180, help="seconds the sums may take")
    parser.add_argument("--settle", type=float, default=90, help="seconds to wait for the deliveries' end")
    args = parser.parse_args()
    receivers = [StallingReceiver("tarpit") for _ in range(5)] + [
        StallingReceiver("silent") for _ in range(5)
    ]
    with stack() as s:
        s.env.update(
            {
                "WEBHOOK_SECRET": SECRET,
                "WEBHOOK_ALLOW_HTTP": "true",
                "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
                "WEBHOOK_RETRY_DELAYS": RETRY_DELAYS,
                "RECOVERY_INTERVAL_SECONDS": "5",
            }
        )
        base = f"http://127.0.0.1:{s.gunicorn('run:app', '/health')}/api/v1/tasks"
        start_workers(s, args.shared_pool)
        engine = sa.create_engine(normalize_url(s.env["DATABASE_URL"]))

        def rows(sql: str, **params: object) -> list:
            with engine.connect() as conn:
                return list(conn.execute(sa.text(sql), params))

        hooked = [
            post(
                base,
                {
                    "name": "sum",
                    "parameters": {"a": 1, "b": n},
                    "webhook": {"url": f"http://127.0.0.1:{r.port}/"},
                },
            )
            for n, r in enumerate(receivers)
        ]
        wait_until(lambda: sum(r.connections > 0 for r in receivers) >= 2, 60, "a stalled delivery")
        shape = "one shared pool" if args.shared_pool else "deliveries on a worker of their own"
        print(f"slow receivers ({shape}): {time_sums(base, args.sums, args.window, rows)}", flush=True)
        ends = settled(hooked, args.settle, rows)
        print(f"  the 10 stalled deliveries, {args.settle:.0f} s at most later: {ends}")
        engine.dispose()
    for receiver in receivers:
        receiver.stop()


if __name__ == "__main__":
    main()
