"""GET /api/v1/tasks/<id>?wait=N from many clients at once: what the database sees, and how soon
each waiter hears that its task finished.

Starts nothing but Tasker's own app in this process (PostgreSQL database and private Redis from
harness.py, no worker): WAITERS rows are made STARTED by hand, and as many client threads
long-poll them, each asking again as soon as its wait ends, as a client would. Every statement
the process sends to PostgreSQL during the window is counted (SQLAlchemy's cursor event, which
sees each one on its way to the server). Then every task
is finished through the worker's own outcome write, and the time until each waiter returns is
measured.

Usage: python bench/long_poll.py [--waiters 64] [--wait 30] [--seconds 60]
"""

import argparse
import statistics
import threading
import time
import uuid

import sqlalchemy as sa
from harness import stack

from app import create_app
from app.models import task as task_model
from config import load_config


class StatementCounter:
    def __init__(self, engine: sa.Engine):
        self.count = 0
        self._lock = threading.Lock()
        sa.event.listen(engine, "before_cursor_execute", self.seen)

    def seen(self, *args: object) -> None:
        with self._lock:
            self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiters", type=int, default=64)
    parser.add_argument("--wait", type=float, default=30)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    with stack() as tasker_stack:
        app = create_app("production", load_config("production", tasker_stack.env))
        tasker = app.extensions["tasker"]
        db, client = tasker.db, app.test_client()
        counter = StatementCounter(db.engine)
        ids = [uuid.uuid4() for _ in range(args.waiters)]
        for task_id in ids:
            db.run(
                lambda c, t=task_id: task_model.insert(c, t, "process_data", {}, "default", status="STARTED")
            )
        finished_at: dict[uuid.UUID, float] = {}
        returned_at: dict[uuid.UUID, float] = {}
        stop = threading.Event()

        def wait_on(task_id: uuid.UUID) -> None:
            while not stop.is_set():
                status = client.get(f"/api/v1/tasks/{task_id}?wait={args.wait:g}").get_json()["status"]
                if status == "COMPLETED":
                    returned_at[task_id] = time.monotonic()
                    return

        threads = [threading.Thread(target=wait_on, args=(task_id,)) for task_id in ids]
        for thread in threads:
            thread.start()
        time.sleep(2)  # every waiter is in its first wait
        before, started = counter.count, time.monotonic()
        time.sleep(args.seconds)  # the measurement window: nothing changes, the waiters wait
        elapsed = time.monotonic() - started
        rate = (counter.count - before) / elapsed
        callbacks = app.extensions["celery"].services.callbacks
        for task_id in ids:  # the worker's outcome write (the rows are STARTED), which announces it
            finished_at[task_id] = time.monotonic()
            callbacks.record_success(task_id, 0)
        for thread in threads:
            thread.join(timeout=args.wait + 10)
        stop.set()
        woken = [(returned_at[t] - finished_at[t]) * 1000 for t in ids if t in returned_at]
        print(
            f"long_poll: {args.waiters} waiters, wait={args.wait:g} s: {rate:.1f} queries/s at the database "
            f"over {elapsed:.0f} s; woken {statistics.median(woken):.1f} ms median, {max(woken):.1f} ms max "
            f"after the outcome ({len(woken)} of {args.waiters})"
        )
        tasker.tasks.watch.close()
        db.dispose()


if __name__ == "__main__":
    main()
