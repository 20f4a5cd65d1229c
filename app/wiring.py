"""The wiring: every collaborator built once from one config and handed to whatever uses it.

`create_app` (app/__init__.py) calls `build_tasker`; tests and benchmarks may too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from celery.signals import beat_init, celeryd_init, worker_process_shutdown, worker_ready, worker_shutdown

from app.api.docs import json_schema
from app.core import redact
from app.core.beat.housekeeping import Housekeeping, Job
from app.core.beat.presence import WorkerPresence
from app.core.beat.recovery import Recovery, Thresholds
from app.core.beat.retention import Retention
from app.core.beat.scheduler import Scheduler
from app.core.broker import WEBHOOK_QUEUE, Broker, broker_class
from app.core.cache_manager import CacheManager
from app.core.celery_app import create_celery, size_webhook_worker
from app.core.concurrency import Admissions
from app.core.database_manager import DatabaseManager
from app.core.endings import Endings
from app.core.http_targets import HttpTargets
from app.core.keys import KeyManager, local_secret
from app.core.live.changes import ChangeFeed, Watch
from app.core.live.streams import StreamHub
from app.core.metrics import Snapshot
from app.core.monitor import Monitor
from app.core.pauses import Pauses
from app.core.quotas import UnfinishedTasks
from app.core.rate_limits import RateLimits
from app.core.schedule_manager import ScheduleManager
from app.core.sealing import Sealer
from app.core.served import ServedTypes
from app.core.task_manager import TaskManager
from app.core.usage import UsagePolicy
from app.core.webhooks import Deliveries
from app.core.workflows import Workflows
from app.core.workflows.definition import Limits
from app.core.workflows.manager import WorkflowManager
from app.models import ops
from app.models import task as task_model
from app.models import workflow as workflow_model
from app.tasks import (
    discovery,
    task_functions,  # noqa: F401 - registers the Celery tasks
)
from app.tasks.base import MAX_RETRY_DELAY_SECONDS, TaskerCelery, TaskerTask
from app.tasks.callbacks import TaskCallbacks
from app.tasks.hints import DeclarationError
from app.tasks.registry import Registry, build_registry
from app.tasks.services import Tasker


def registry_of(config: Mapping[str, Any]) -> Registry:
    """The task types Tasker's and the configured modules declare (app/tasks/discovery.py), with
    the limits and retries the settings give."""
    declarations = discovery.load(config["TASK_MODULES"])
    registry = build_registry(declarations, config["DEFAULT_TASK_TIMEOUT"], config["MAX_RETRY_ATTEMPTS"])
    return registry.with_limits(config["TASK_LIMITS"])


def schema_hashes(registry: Registry) -> dict[str, str]:
    """Per task type, a hash of its parameters' JSON Schema: what workers announce, and what the API
    compares. A schema that cannot be written as JSON Schema stops the start, naming its module."""
    hashes = {}
    for task_type in registry:
        try:
            document = json.dumps(json_schema(task_type.schema), sort_keys=True)
        except Exception as exc:  # noqa: BLE001 - whatever the schema's fields raise: the start stops
            raise DeclarationError(
                f"{task_type.module}: the parameters of {task_type.name} cannot be written as JSON "
                f"Schema ({type(exc).__name__}: {exc}); use fields that can"
            ) from None
        hashes[task_type.name] = hashlib.sha256(document.encode()).hexdigest()
    return hashes


def _flows(registry: Registry, broker: Broker, watch: Watch) -> tuple[Workflows, Admissions]:
    """What moves a task on when another ends: its workflow's next steps, its key's next tasks."""
    return Workflows(registry, broker, watch), Admissions(registry, broker, watch)


def _celery(config: Mapping[str, Any], registry: Registry) -> TaskerCelery:
    celery = create_celery("app", config, [*registry.queues, WEBHOOK_QUEUE], TaskerCelery, TaskerTask)
    assert isinstance(celery, TaskerCelery)
    return celery


def _workflow_limits(config: Mapping[str, Any]) -> Limits:
    return Limits(config["WORKFLOW_MAX_STEPS"], config["WORKFLOW_MAX_ITEMS"])


def _recovery(config: Mapping[str, Any], endings: Endings, registry: Registry, broker: Broker) -> Recovery:
    """The recovery sweep, with the paused queues whose stranded tasks it releases."""
    recovery = Recovery(endings, registry, broker, Thresholds.from_config(config, MAX_RETRY_DELAY_SECONDS))
    assert endings.admissions is not None
    recovery.pauses = Pauses(endings.db, endings.admissions, registry.queues)
    return recovery


def _rate_limits(config: Mapping[str, Any], endings: Endings, scheduler: Scheduler) -> RateLimits:
    """The named rate limits, whose waiting tasks beat's due loop publishes."""
    assert endings.admissions is not None
    horizon = config["SCHEDULER_INTERVAL_SECONDS"]
    scheduler.rate_limits = RateLimits(endings.db, endings.admissions, horizon)
    return scheduler.rate_limits


def build_tasker(config: Mapping[str, Any]) -> tuple[Tasker, TaskerCelery]:
    """Every collaborator, built once and handed to whatever uses it."""
    registry = registry_of(config)
    hashes = schema_hashes(registry)
    db = DatabaseManager(config["DATABASE_URL"], config["DATABASE_POOL_SIZE"])
    served = ServedTypes(db, hashes, config["WORKER_HEARTBEAT_SECONDS"])
    redactor = redact.Redactor.from_config(config)
    cache = CacheManager.from_url(config["REDIS_URL"], config["CACHE_TTL_SECONDS"])
    watch, streams = _live(config, db)
    celery = _celery(config, registry)
    broker = broker_class(config)(celery)
    secret_key = config["SECRET_KEY"] or local_secret(config["DATA_DIR"])
    deliveries = _deliveries(config, db, broker, secret_key)
    http_targets = HttpTargets.from_config(config, deliveries.secrets.available)
    policy = UsagePolicy(config["OPENAI_ALLOWED_MODELS"], config["OPENAI_MAX_TOKENS"], http_targets)
    sealer = Sealer(secret_key)
    endings = Endings(db, cache, watch, deliveries, *_flows(registry, broker, watch))
    scheduler = Scheduler(db, registry, broker, watch.announce, deliveries, endings.admissions)
    recovery = _recovery(config, endings, registry, broker)
    quota = UnfinishedTasks(db, config["QUOTA_UNFINISHED_TASKS"])  # tasks and workflows' steps alike
    tasks = TaskManager(
        endings, registry, broker, quota, policy,
        config["MAX_RETRY_ATTEMPTS"], config["SUBMIT_BATCH_MAX"], sealer, recovery.pauses,
    )  # fmt: skip
    schedules = ScheduleManager(
        db, registry, config["QUOTA_SCHEDULES"], config["SCHEDULE_MIN_INTERVAL_SECONDS"], policy,
        deliveries, sealer,
    )  # fmt: skip
    announced = {t.name: (t.queue, hashes[t.name]) for t in registry}
    housekeeping, presence = _housekeeping(config, celery, db, scheduler, recovery, announced)
    tasker = Tasker(
        settings=config,
        registry=registry,
        callbacks=TaskCallbacks(endings, redactor.secret),
        db=db,
        cache=cache,
        endings=endings,
        tasks=tasks,
        schedules=schedules,
        workflows=WorkflowManager(endings, registry, broker, _workflow_limits(config), quota),
        monitor=Monitor(db, cache, broker, registry, config["WORKER_HEARTBEAT_SECONDS"]),
        scheduler=scheduler,
        recovery=recovery,
        housekeeping=housekeeping,
        keys=KeyManager(db, secret_key),
        redactor=redactor,
        presence=presence,
        snapshot=_snapshot(config, db, broker, registry, served),
        served=served,
        sealer=sealer,
        http_targets=http_targets,
        streams=streams,
        deliveries=deliveries,
        pauses=recovery.pauses,
        rate_limits=_rate_limits(config, endings, scheduler),
    )
    # The one extension of the Celery app: the services its tasks use, and the submit path that
    # .delay() and send_task() from Python go through.
    celery.bind(tasker)
    return tasker, celery


def _snapshot(
    config: Mapping[str, Any], db: DatabaseManager, broker: Broker, registry: Registry, served: ServedTypes
) -> Snapshot:
    """What /metrics reads at each scrape: rows, queues, workers and the types they serve."""
    heartbeat, timeout = config["WORKER_HEARTBEAT_SECONDS"], config["METRICS_SCRAPE_TIMEOUT_SECONDS"]
    return Snapshot(db, broker, registry.queues, heartbeat, timeout, served)


def _live(config: Mapping[str, Any], db: DatabaseManager) -> tuple[Watch, StreamHub]:
    """What tells readers of a change: the watch (waits) and the hub (event streams)."""
    feed = ChangeFeed.from_url(config["REDIS_URL"], config["DATA_DIR"])
    # The read-back only catches lost announcements (a writer that died between its commit and
    # its announcement, Redis away); datagrams between the processes of one host are seldom lost.
    fallback = 5.0 if feed.client is not None else 1.0
    watch = Watch(feed, lambda ids: db.run_statement(lambda c: _statuses(c, list(ids))), fallback)
    # Streams read the tasks they follow every second: writers learn within a second that
    # streams are open (ChangeFeed.wanted), and changes made before that come by this read.
    streams = StreamHub(watch, lambda ids: db.run_statement(lambda c: task_model.rows(c, ids)), 1.0)
    return watch, streams


def _statuses(conn: Any, ids: list[Any]) -> dict[Any, str]:
    """What a waiter reads back: the statuses of those of `ids` that are tasks or workflows."""
    return task_model.statuses(conn, ids) | workflow_model.statuses(conn, ids)


def _deliveries(
    config: Mapping[str, Any], db: DatabaseManager, broker: Broker, secret_key: str
) -> Deliveries:
    # One attempt's bound: connect and the whole exchange, then 5 s of grace before the soft
    # limit stops it and 5 s more before the hard one.
    attempt_limit = config["WEBHOOK_CONNECT_TIMEOUT_SECONDS"] + config["WEBHOOK_TIMEOUT_SECONDS"] + 10
    return Deliveries.from_config(
        db, lambda delivery: broker.enqueue_delivery(delivery, attempt_limit), config, secret_key
    )


def _housekeeping(
    config: Mapping[str, Any],
    celery: TaskerCelery,
    db: DatabaseManager,
    scheduler: Scheduler,
    recovery: Recovery,
    task_types: Mapping[str, tuple[str, str]],
) -> tuple[Housekeeping, WorkerPresence]:
    """Beat's loops (due tasks and schedules, the recovery sweep, retention) and a worker's
    heartbeat, each connected to the Celery signal that starts it."""
    retention = Retention(db, config["TASK_RETENTION_DAYS"])
    jobs = [
        Job("publish-due", config["SCHEDULER_INTERVAL_SECONDS"], scheduler.run_due),
        Job("recovery-sweep", config["RECOVERY_INTERVAL_SECONDS"], recovery.sweep),
        Job("retention", config["RETENTION_INTERVAL_SECONDS"], retention.run),
    ]
    housekeeping = Housekeeping(
        celery,
        jobs,
        report=lambda job, counts: db.run(lambda c: ops.record_run(c, job.name, job.interval, counts)),
    )
    presence = WorkerPresence(
        celery, db, config["WORKER_HEARTBEAT_SECONDS"], config["WORKER_METRICS_PORT"], task_types
    )
    _connect_signals(housekeeping, presence)
    return housekeeping, presence


def _connect_signals(housekeeping: Housekeeping, presence: WorkerPresence) -> None:
    """Celery's signals hold bound methods weakly: they go with this app."""
    beat_init.connect(housekeeping.on_beat_init)
    beat_init.connect(presence.on_beat_init)
    worker_ready.connect(presence.on_worker_ready)
    worker_shutdown.connect(presence.on_worker_shutdown)
    worker_process_shutdown.connect(WorkerPresence.on_process_exit)
    celeryd_init.connect(size_webhook_worker)  # a module's function: connected once
