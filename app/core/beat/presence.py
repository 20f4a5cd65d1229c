"""A Celery worker's presence: its heartbeat row, and (optionally) its own /metrics port.

Started from Celery's `worker_ready` signal in the worker's main process:

- every WORKER_HEARTBEAT_SECONDS the worker's row in `workers` is refreshed (the database's
  clock), with the task types it serves and a hash of each one's parameters (app/core/served.py
  reads them); `tasker_workers_online` counts rows at most three heartbeats old, so a scrape
  never has to ping workers and wait for their replies. The row goes at `worker_shutdown`.
- with WORKER_METRICS_PORT set, the main process (or beat) serves what it and its pool processes record
  (they share PROMETHEUS_MULTIPROC_DIR, which celery_worker.py requires and empties). That is
  for a worker on a host of its own; on one host, the API's /metrics already adds up every
  process that shares its directory.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import start_http_server

from app.core import metrics
from app.core.errors import DependencyUnavailable
from app.models import ops

logger = logging.getLogger(__name__)


class WorkerPresence:
    def __init__(
        self,
        celery: Any,
        db: Any,
        interval: float,
        metrics_port: int = 0,
        task_types: Mapping[str, tuple[str, str]] | None = None,
    ):
        self.task_types = dict(task_types or {})  # name: (queue, hash of its parameters' JSON Schema)
        self.celery = celery
        self.db = db
        self.interval = interval
        self.metrics_port = metrics_port
        self._stop = threading.Event()
        self._hostname: str | None = None
        self._thread: threading.Thread | None = None

    def on_worker_ready(self, sender: Any = None, **kwargs: Any) -> None:
        """Celery's worker_ready (sender: the consumer): for this app's workers only."""
        if sender is None or getattr(sender, "app", None) is not self.celery or self._thread:
            return
        self._hostname = sender.hostname
        consumed = sorted(self.celery.amqp.queues.consume_from or ())
        # What it serves: the types it loaded whose queue it consumes, announced in every heartbeat.
        served = {name: digest for name, (queue, digest) in self.task_types.items() if queue in consumed}
        logger.info("serving task types: %s", ", ".join(sorted(served)) or "none")
        started = datetime.now(UTC)
        self._thread = threading.Thread(
            target=self._beat,
            args=(",".join(consumed), started, served),
            name="tasker-heartbeat",
            daemon=True,
        )
        self._thread.start()
        self._serve_metrics("worker")

    def on_beat_init(self, sender: Any = None, **kwargs: Any) -> None:
        """Celery's beat_init: beat serves what it records too (tasks the recovery sweep fails)."""
        if sender is not None and sender.app is self.celery:
            self._serve_metrics("beat")

    def _serve_metrics(self, process: str) -> None:
        if self.metrics_port:
            start_http_server(self.metrics_port, registry=metrics.recorded())
            logger.info("%s metrics on :%s/metrics", process, self.metrics_port)

    def on_worker_shutdown(self, sender: Any = None, **kwargs: Any) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None
        try:
            self.db.run(lambda c: ops.remove_worker(c, self._hostname))
        except DependencyUnavailable as exc:
            logger.warning("could not remove this worker's heartbeat row: %s", exc.message)

    @staticmethod
    def on_process_exit(sender: Any = None, pid: int | None = None, **kwargs: Any) -> None:
        """A pool process ended (worker_process_shutdown, in that process): its live files go."""
        metrics.process_exited(pid or os.getpid())

    def _beat(self, queues: str, started: datetime, served: Mapping[str, str]) -> None:
        hostname = self._hostname or "unknown"
        while True:
            try:
                self.db.run(lambda c: ops.heartbeat(c, hostname, queues, started, served))
            except DependencyUnavailable as exc:
                logger.warning("heartbeat not written: %s", exc.message)
            except Exception:  # a bug here must not end the heartbeat
                logger.exception("heartbeat failed")
            if self._stop.wait(self.interval):
                return
