"""Health probes and queue statistics: what the operator asks of the database, broker, cache and workers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from app.core.broker import WEBHOOK_QUEUE, Broker
from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, DependencyUnavailable
from app.core.ports import Registry
from app.core.resources import utc_iso
from app.models import ops
from app.models import pauses as pause_model
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models.task import TERMINAL, TaskStatus

QUEUE_TOTALS_SECONDS = 5.0  # how old the totals of /api/v1/queues and /metrics may be


class Memo:
    """Answers kept for `seconds`, per key, computed once however many callers ask at once: a
    count over the whole tasks table costs tens of milliseconds at half a million rows, so
    scrapes and dashboards in a loop cost one count per few seconds, not one each."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._kept: dict[Any, tuple[float, Any]] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            kept = self._kept.get(key)
            if kept is not None and kept[0] > time.monotonic():
                return kept[1]
            value = compute()
            with self._lock:
                if len(self._kept) > 10_000:
                    self._kept.clear()
                    self._locks = {key: lock}
                self._kept[key] = (time.monotonic() + self.seconds, value)
            return value


class Monitor:
    def __init__(
        self,
        db: DatabaseManager,
        cache: CacheManager,
        broker: Broker,
        registry: Registry,
        heartbeat_seconds: float = 30.0,
    ):
        self.heartbeat_seconds = heartbeat_seconds  # a worker unseen for three of them is offline
        self.totals = Memo(QUEUE_TOTALS_SECONDS)  # per owner (None: everyone's)
        self.db = db
        self.cache = cache
        self.broker = broker
        self.registry = registry

    def check_dependencies(self) -> dict[str, str]:
        """'ok' or the reason, for the database, the broker and the cache."""
        checks = {"database": _probe(self.db.ping), "broker": _probe(self.broker.ping)}
        checks["cache"] = "ok" if self.cache.ping() else "unavailable (reads fall back to the database)"
        return checks

    def check_database(self) -> str:
        return _probe(self.db.ping)

    def check_workers(self, timeout: float = 1.0) -> int:
        """1 as soon as a worker answers a ping, 0 if none does in time or the broker is down."""
        try:
            return self.broker.ping_workers(timeout)
        except BrokerUnavailable:
            return 0

    def housekeeping(self, jobs: dict[str, float]) -> dict[str, Any]:
        """Per housekeeping job (name: interval): when beat last completed a pass, and whether
        that is more than three intervals ago ("late": beat stopped, or the job keeps failing)."""
        try:
            now, runs = self.db.run(lambda c: (task_model.database_now(c), ops.housekeeping_runs(c)))
        except DependencyUnavailable:
            return {job: {"last_run": None, "late": None} for job in jobs}
        last = {run.job: run for run in runs}
        report: dict[str, Any] = {}
        for job, interval in jobs.items():
            run = last.get(job)
            if run is None:
                report[job] = {"last_run": None, "interval_seconds": interval, "late": True}
                continue
            age = max(0.0, (now - run.last_run_at).total_seconds())
            report[job] = {
                "last_run": utc_iso(run.last_run_at),
                "age_seconds": round(age, 3),
                "interval_seconds": interval,
                "late": age > 3 * interval,
            }
        return report

    def stats(self, window_seconds: int, owner: str | None = None) -> dict[str, Any]:
        """Per task type, over the tasks that finished in the last `window_seconds`: counts by
        status, throughput per minute, failure ratio, run and wait time percentiles (seconds)."""

        def read(conn: Any) -> tuple[Any, ...]:
            now = task_model.database_now(conn)
            since = now - timedelta(seconds=window_seconds)
            return now, since, ops.finished_counts(conn, since, owner), ops.finished_times(conn, since, owner)

        now, since, counts, times = self.db.run(read)
        names = [task_type.name for task_type in self.registry]
        finished = {name: {status.value: 0 for status in TERMINAL} for name in names}
        for name, status, count in counts:
            finished.setdefault(name, {s.value: 0 for s in TERMINAL})[status] = count
        minutes = window_seconds / 60
        labels = [f"p{round(p * 100)}" for p in ops.PERCENTILES]

        def percentiles(name: str, kind: str) -> dict[str, float | None]:
            values = times.get(name, {}).get(kind)
            if values is None:
                return dict.fromkeys(labels)
            return {label: round(value, 4) for label, value in zip(labels, values, strict=True)}

        task_types = []
        for name, by_status in finished.items():
            total = sum(by_status.values())
            task_types.append(
                {
                    "task_type": name,
                    "finished": by_status,
                    "total": total,
                    "throughput_per_minute": round(total / minutes, 4),
                    "failure_ratio": round(by_status[TaskStatus.FAILED] / total, 4) if total else None,
                    "run_seconds": percentiles(name, "run"),
                    "wait_seconds": percentiles(name, "wait"),
                }
            )
        return {
            "window_seconds": window_seconds,
            "since": utc_iso(since),
            "until": utc_iso(now),
            "task_types": task_types,
        }

    def check_redis(self) -> dict[str, str]:
        """'ok', the reason, or 'not used ...' for the Redis cache and the Redis broker."""
        checks = {
            "cache": "not used (in-process cache)",
            "broker": f"not used (the {self.broker.kind} broker)",
        }
        if self.cache.is_redis:
            checks["cache"] = "ok" if self.cache.ping() else "unavailable"
        if self.broker.is_redis:
            checks["broker"] = _probe(self.broker.ping)
        return checks

    def _deliveries(self, waiting: int, now: datetime, owner: str | None) -> dict[str, Any]:
        """The `webhooks` queue: its pending and started are deliveries (QUEUED, SENDING)."""
        queued, sending, oldest = self.db.run(lambda c: webhook_model.queue_counts(c, owner))
        return {
            "name": WEBHOOK_QUEUE,
            "messages_waiting": waiting,
            "pending": queued,
            "started": sending,
            "oldest_pending_age_seconds": _age(now, oldest),
            "paused": False,  # deliveries are not paused: a receiver's outage backs off on its own
            "held": 0,
        }

    def queue_stats(self, owner: str | None = None) -> dict[str, Any]:
        """Per queue: messages in the broker, PENDING/STARTED rows, the oldest PENDING's age, whether
        it is paused and the tasks its pause holds; totals
        by status, and how many workers are online. With `owner`, that owner's rows only (the
        broker's depths and the workers are the deployment's); the totals are at most
        QUEUE_TOTALS_SECONDS old."""
        queues = sorted({task_type.queue for task_type in self.registry})
        depths = self.broker.queue_depths([*queues, WEBHOOK_QUEUE])
        now = self.db.run(task_model.database_now)
        counts = self.db.run(lambda c: task_model.counts_by_queue(c, owner))
        oldest = self.db.run(lambda c: {queue: ops.oldest_pending(c, queue, owner) for queue in queues})
        paused = self.db.run(pause_model.paused)
        held = self.db.run(lambda c: pause_model.held_counts(c, owner))
        since = now - timedelta(seconds=3 * self.heartbeat_seconds)
        online = self.db.run(lambda c: ops.workers_seen_since(c, since))
        totals = {status.value: 0 for status in TaskStatus}
        for _, status, count in counts:  # the unfinished, live
            totals[status] += count
        finished = self.totals.get(  # the finished, the costly count, at most a few seconds old
            owner, lambda: self.db.run(lambda c: ops.counts_by_status(c, owner, TERMINAL))
        )
        totals.update(finished)

        def count(queue: str, status: str) -> int:
            return sum(n for q, s, n in counts if q == queue and s == status)

        return {
            "queues": [
                {
                    "name": queue,
                    "messages_waiting": depths.get(queue, 0),
                    "pending": count(queue, TaskStatus.PENDING),
                    "started": count(queue, TaskStatus.STARTED),
                    "oldest_pending_age_seconds": _age(now, oldest.get(queue)),
                    "paused": queue in paused,
                    "held": held.get(queue, 0),
                }
                for queue in queues
            ]
            + [self._deliveries(depths.get(WEBHOOK_QUEUE, 0), now, owner)],
            "totals": totals,
            "workers_online": online,
        }


def _probe(ping: Any) -> str:
    try:
        ping()
    except DependencyUnavailable as exc:
        return exc.details.get("reason") or exc.message
    return "ok"


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 3)
