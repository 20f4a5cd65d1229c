"""Every Prometheus metric Tasker exposes, declared once, and the /metrics page that renders them.

Counters and histograms are recorded where things happen: the API through Flask request hooks
(app/api/observe.py) and TaskManager, workers through the task base class. Under gunicorn and
a prefork worker each process records into PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode, chosen when prometheus_client is first imported) and /metrics adds the
files of every process up; with the variable unset a process serves its own figures.

Gauges about rows, queues, workers and housekeeping are not recorded by anyone: `Snapshot`
computes them when /metrics is scraped, each source with a deadline, so a scrape costs a few
indexed queries and one broker round trip and never hangs on a dependency that is down.

Labels are bounded: task type (the registry's names), queue, status, the route template, the
HTTP method and status code, a housekeeping job's name (label `housekeeping`). Never an id or
anything a client typed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from app.core.broker import WEBHOOK_QUEUE
from app.core.errors import DependencyUnavailable
from app.core.monitor import QUEUE_TOTALS_SECONDS, Memo
from app.models import ops
from app.models import pauses as pause_model
from app.models.task import TaskStatus, database_now

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
disable_created_metrics()  # no `_created` series: counters start at zero with each process
TASK_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

TASKS_SUBMITTED = Counter(
    "tasker_tasks_submitted", "Tasks accepted by the API (a new row and its message).", ["task_type"]
)
SUBMIT_BATCH_SIZE = Histogram(
    "tasker_submit_batch_size",
    "Submits written together by one INSERT and one publish (group commit, SUBMIT_BATCH_MAX).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1000),
)
TASKS_FINISHED = Counter(
    "tasker_tasks_finished",
    "Tasks that reached a terminal status (COMPLETED, FAILED, CANCELLED), counted once per task.",
    ["task_type", "status"],
)
WORKFLOWS_FINISHED = Counter(
    "tasker_workflows_finished", "Workflows that ended (COMPLETED, FAILED, CANCELLED).", ["status"]
)
WORKFLOW_REPAIRS = Counter(
    "tasker_workflow_repairs",
    "WAITING steps the recovery sweep found with every parent ended and decided itself: always 0 "
    "unless a bug skipped a release.",
)
TASK_RETRIES = Counter(
    "tasker_task_retries", "Runs that ended in RETRYING (a transient error, retried later).", ["task_type"]
)
TASK_RUN_SECONDS = Histogram(
    "tasker_task_run_seconds",
    "From the worker's claim of a task to its outcome (one observation per run).",
    ["task_type"],
    buckets=TASK_SECONDS,
)
TASK_WAIT_SECONDS = Histogram(
    "tasker_task_wait_seconds",
    "From a task's creation (or its due time) to its first claim by a worker.",
    ["task_type", "queue"],
    buckets=TASK_SECONDS,
)
WEBHOOK_ATTEMPTS = Counter(
    "tasker_webhook_attempts",
    "Attempts to send a webhook delivery, by what became of the delivery: delivered, retry "
    "(it waits for its next attempt) or failed (refused by the receiver, or out of attempts).",
    ["outcome"],
)
WEBHOOK_SECONDS = Histogram(
    "tasker_webhook_attempt_seconds",
    "How long one attempt to send a webhook delivery took, connect to the answer read.",
    buckets=HTTP_SECONDS,
)
HTTP_SECONDS_HISTOGRAM = Histogram(
    "tasker_http_request_duration_seconds",
    "HTTP requests by method, route template and status code.",
    ["method", "endpoint", "status"],
    buckets=HTTP_SECONDS,
)


# prometheus_client chose its mode from this variable when it was imported (just above).
_MULTIPROCESS_DIR = os.environ.get(MULTIPROC_ENV) or None


def multiprocess_dir() -> str | None:
    """The directory this process's figures go to (None: they stay in this process)."""
    return _MULTIPROCESS_DIR


def process_exited(pid: int) -> None:
    """A process is gone: drop its live-gauge files (its counters stay in the totals)."""
    if multiprocess_dir():
        mark_process_dead(pid)


class _Chain:
    def __init__(self, *sources: Any):
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            yield from source.collect()


def recorded() -> Any:
    """What this process (single-process mode) or every process of the directory recorded."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def render(snapshot: Snapshot | None = None) -> bytes:
    sources = [recorded()] + ([snapshot] if snapshot is not None else [])
    return generate_latest(_Chain(*sources))  # type: ignore[arg-type]


class Snapshot:
    """The gauges computed at scrape time, from the database and the broker, each within `timeout`."""

    _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tasker-metrics")

    def __init__(
        self,
        db: Any,
        broker: Any,
        queues: Iterable[str],
        heartbeat_seconds: float,
        timeout: float = 2.0,
        served: Any = None,
    ):
        self.served = served  # app/core/served.py: the task types live workers serve
        self.db = db
        self.broker = broker
        self.queues = sorted(set(queues))
        self.heartbeat_seconds = heartbeat_seconds
        self.timeout = timeout
        self._counts = Memo(QUEUE_TOTALS_SECONDS)  # a scrape loop costs one count per few seconds

    def collect(self) -> Iterator[Metric]:
        jobs: dict[str, Callable[[], list[Metric]]] = {
            "database": self._from_database,
            "broker": self._from_broker,
        }
        if self.served is not None:
            jobs["workers"] = self.served.metrics
        futures = {name: self._pool.submit(job) for name, job in jobs.items()}
        up = GaugeMetricFamily(
            "tasker_metrics_source_up",
            "1 if the source answered this scrape in time, 0 if its gauges are missing from it.",
            labels=["source"],
        )
        for name, future in futures.items():
            try:
                yield from future.result(timeout=self.timeout)
            except (DependencyUnavailable, FutureTimeout) as exc:
                logger.warning("metrics: the %s did not answer in time: %s", name, _reason(exc))
                up.add_metric([name], 0)
            except Exception:  # a scrape must answer with what it has
                logger.exception("metrics: reading the %s failed", name)
                up.add_metric([name], 0)
            else:
                up.add_metric([name], 1)
        yield up

    def _from_broker(self) -> list[Metric]:
        queues = [*self.queues, WEBHOOK_QUEUE]  # the deliveries' backlog too
        depths = self.broker.queue_depths(queues)
        family = GaugeMetricFamily(
            "tasker_queue_messages", "Messages waiting in the broker, per queue.", labels=["queue"]
        )
        for queue in queues:
            family.add_metric([queue], depths.get(queue, 0))
        return [family]

    def _from_database(self) -> list[Metric]:
        milliseconds = int(self.timeout * 1000)

        def read(conn: Any) -> tuple[Any, ...]:
            ops.statement_timeout(conn, milliseconds)
            now = database_now(conn)
            since = now - timedelta(seconds=3 * self.heartbeat_seconds)
            oldest = {queue: ops.oldest_pending(conn, queue) for queue in self.queues}
            return (
                now,
                self._counts.get(None, lambda: ops.counts_by_status(conn)),
                oldest,
                ops.workers_seen_since(conn, since),
                ops.housekeeping_runs(conn),
                pause_model.paused(conn),
            )

        now, counts, oldest, workers, runs, paused = self.db.run(read)
        tasks = GaugeMetricFamily("tasker_tasks", "Task rows by status.", labels=["status"])
        for status in TaskStatus:
            tasks.add_metric([status.value], counts.get(status.value, 0))
        age = GaugeMetricFamily(
            "tasker_oldest_pending_age_seconds",
            "Age of the oldest PENDING task per queue (0 when none waits).",
            labels=["queue"],
        )
        for queue, created in oldest.items():
            age.add_metric([queue], 0 if created is None else max(0.0, (now - created).total_seconds()))
        online = GaugeMetricFamily(
            "tasker_workers_online",
            "Celery workers whose heartbeat is at most three WORKER_HEARTBEAT_SECONDS old.",
            value=workers,
        )
        pauses = GaugeMetricFamily(
            "tasker_queue_paused",
            "1 while the queue is paused (its tasks do not start), else 0.",
            labels=["queue"],
        )
        for queue in self.queues:
            pauses.add_metric([queue], int(queue in paused))
        return [tasks, age, online, pauses, *housekeeping_metrics(runs)]


def housekeeping_metrics(runs: list[Any]) -> list[Metric]:
    last = GaugeMetricFamily(
        "tasker_housekeeping_last_run_timestamp_seconds",
        "When each housekeeping job (run by beat) last completed a pass, as a Unix time.",
        labels=["housekeeping"],  # not `job`: Prometheus gives that label to the scrape job
    )
    interval = GaugeMetricFamily(
        "tasker_housekeeping_interval_seconds", "Each housekeeping job's interval.", labels=["housekeeping"]
    )
    recovered = CounterMetricFamily(
        "tasker_recovered",
        "Tasks the recovery sweep published again or failed, by reason: republished (a PENDING or "
        "RETRYING row whose message was lost), requeued (a STARTED row whose worker died), failed "
        "(started too many times), deliveries (webhook deliveries whose message or worker was lost).",
        labels=["reason"],
    )
    totals: dict[str, int] = {}
    for run in runs:
        last.add_metric([run.job], run.last_run_at.timestamp())
        interval.add_metric([run.job], run.interval_seconds)
        if run.job == "recovery-sweep":
            totals = ops.totals_of(run)
    for reason in ("republished", "requeued", "failed", "deliveries"):
        recovered.add_metric([reason], totals.get(reason, 0))
    return [last, interval, recovered]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DependencyUnavailable):
        return exc.details.get("reason") or exc.message
    return "timed out"
