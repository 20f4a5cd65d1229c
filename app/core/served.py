"""Whether the API and the workers agree on the catalogue.

Each worker's heartbeat names the task types it serves (those it loaded whose queue it
consumes) with a hash of each one's parameters (app/core/beat/presence.py). From those rows:
how many live workers serve each type (the catalogue shows it, a submit of a type none serves
says so), and which workers hold another version of a type's parameters than the API (a WARNING
line once per worker and version, and the gauge tasker_task_type_schema_mismatches).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from app.core.errors import DependencyUnavailable
from app.core.monitor import QUEUE_TOTALS_SECONDS, Memo
from app.models import ops
from app.models.task import database_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    workers: dict[str, int] = field(default_factory=dict)  # per task type: live workers serving it
    mismatched: dict[str, list[str]] = field(default_factory=dict)  # per task type: hosts that differ


class ServedTypes:
    def __init__(self, db: Any, hashes: Mapping[str, str], heartbeat_seconds: float):
        self.db = db
        self.hashes = dict(hashes)  # the API's own: task type -> hash of its parameters
        self.heartbeat_seconds = heartbeat_seconds
        self._memo = Memo(QUEUE_TOTALS_SECONDS)  # at most a few seconds old, read once however many ask
        self._warned: set[tuple[str, str, str]] = set()

    def read(self) -> Served:
        """Per task type, the live workers serving it (DependencyUnavailable: the database is down)."""
        return self._memo.get(None, self._read)

    def _read(self) -> Served:
        def rows(conn: Any) -> list[tuple[str, dict[str, str]]]:
            since = database_now(conn) - timedelta(seconds=3 * self.heartbeat_seconds)
            return ops.served_task_types(conn, since)

        served = Served()
        for hostname, task_types in self.db.run(rows):
            for name, digest in task_types.items():
                served.workers[name] = served.workers.get(name, 0) + 1
                if name in self.hashes and digest != self.hashes[name]:
                    served.mismatched.setdefault(name, []).append(hostname)
                    self._warn(hostname, name, digest)
        return served

    def _warn(self, hostname: str, name: str, digest: str) -> None:
        if (hostname, name, digest) in self._warned:
            return
        self._warned.add((hostname, name, digest))
        logger.warning(
            "worker %s serves %s with other parameters than this API (schema %s, here %s): deploy "
            "the same version of its module to both",
            hostname,
            name,
            digest[:12],
            self.hashes[name][:12],
            extra={"worker": hostname, "task_type": name},
        )

    def unserved(self, name: str) -> str | None:
        """What a submit of `name` says when no live worker serves it (None when one does, or when
        the database cannot tell)."""
        try:
            served = self.read()
        except DependencyUnavailable:
            return None
        if served.workers.get(name):
            return None
        return (
            f"No live worker serves {name}: the task waits in its queue until a worker that loads "
            "its module (TASKER_TASK_MODULES) is started."
        )

    def metrics(self) -> list[Metric]:
        served = self.read()
        workers = GaugeMetricFamily(
            "tasker_task_type_workers", "Live workers that serve each task type.", labels=["task_type"]
        )
        mismatches = GaugeMetricFamily(
            "tasker_task_type_schema_mismatches",
            "Live workers whose parameters of a task type differ from the API's.",
            labels=["task_type"],
        )
        for name in sorted(self.hashes):
            workers.add_metric([name], served.workers.get(name, 0))
            mismatches.add_metric([name], len(served.mismatched.get(name, [])))
        return [workers, mismatches]
