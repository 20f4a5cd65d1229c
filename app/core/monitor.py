"""Health probes and queue statistics: what the operator asks of the database, broker, cache and workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, DependencyUnavailable
from app.core.ports import BrokerProbe, Registry
from app.models import task as task_model
from app.models.task import TaskStatus


class Monitor:
    def __init__(self, db: DatabaseManager, cache: CacheManager, broker: BrokerProbe, registry: Registry):
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

    def check_redis(self) -> dict[str, str]:
        """'ok', the reason, or 'not used ...' for the Redis cache and the Redis broker."""
        checks = {"cache": "not used (in-process cache)", "broker": "not used (another broker)"}
        if self.cache.is_redis:
            checks["cache"] = "ok" if self.cache.ping() else "unavailable"
        if self.broker.broker_kind == "redis":
            checks["broker"] = _probe(self.broker.ping)
        return checks

    def queue_stats(self) -> dict[str, Any]:
        """Per queue: messages in the broker, PENDING/STARTED rows, the oldest PENDING's age; totals."""
        queues = sorted({task_type.queue for task_type in self.registry})
        depths = self.broker.queue_depths(queues)
        now = self.db.run(task_model.database_now)
        counts = self.db.run(task_model.counts_by_queue)
        oldest = self.db.run(task_model.oldest_pending_by_queue)
        totals = {status.value: 0 for status in TaskStatus}
        for _, status, count in counts:
            totals[status] += count

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
                }
                for queue in queues
            ],
            "totals": totals,
        }


def _probe(ping: Any) -> str:
    try:
        ping()
    except DependencyUnavailable as exc:
        return exc.details.get("reason") or exc.message
    return "ok"


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 3)
