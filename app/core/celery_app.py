"""Celery built from the Flask config (the Flask docs' pattern); the broker's part comes from its
class (app/core/broker)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from celery import Celery, Task
from kombu import Queue

from app.core.broker import WEBHOOK_QUEUE, broker_class
from app.core.private import private_dir

WEBHOOK_THREADS_SETTING = "tasker_webhook_worker_threads"


def size_webhook_worker(sender: Any = None, conf: Any = None, options: Any = None, **kwargs: Any) -> None:
    """Celery's celeryd_init: a worker that consumes the `webhooks` queue alone, started without
    --concurrency, runs WEBHOOK_WORKER_THREADS. Deliveries wait on the network, so that worker
    runs a threads pool (`-Q webhooks --pool threads`, as `make run` and compose start it), and
    a slow receiver holds one thread of it, never a process of the tasks' pool."""
    options = options or {}
    queues = options.get("queues") or []
    if isinstance(queues, str):
        queues = queues.split(",")
    if conf is None or options.get("concurrency") or [q.strip() for q in queues] != [WEBHOOK_QUEUE]:
        return
    threads = conf.get(WEBHOOK_THREADS_SETTING)
    if threads:
        conf.worker_concurrency = threads


def celery_settings(config: Mapping[str, Any], queues: Iterable[str]) -> dict[str, Any]:
    """Celery's settings; RELIABILITY.md says why each reliability value is what it is."""
    broker = broker_class(config)
    return {
        "broker_url": config["CELERY_BROKER_URL"],
        "broker_transport": broker.transport,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": broker.transport_options(config),
        "beat_schedule_filename": str(Path(config["DATA_DIR"]) / "celerybeat-schedule"),
        "result_backend": None,  # PostgreSQL holds the outcomes
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_queues": [Queue(name, queue_arguments=broker.queue_arguments()) for name in queues],
        "task_default_queue": "default",
        "task_create_missing_queues": False,
        "worker_prefetch_multiplier": 1,
        "worker_pool": broker.pool,
        # The worker's timer looks at its schedule every 0.2 s (Celery: 1 s), so a warm shutdown
        # does not wait up to a second for the timer thread to notice.
        "worker_timer_precision": 0.2,
        # WORKER_CONCURRENCY, unless the command line says --concurrency; None: Celery's one per core.
        "worker_concurrency": config["WORKER_CONCURRENCY"] or None,
        WEBHOOK_THREADS_SETTING: config["WEBHOOK_WORKER_THREADS"],  # see size_webhook_worker
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # After a pool child dies, wait 2 s (not 10) for a last word from it before calling it
        # lost: outcomes are in the database already, and the slot is free again sooner.
        "worker_lost_wait": 2.0,
        "worker_max_tasks_per_child": 10000,
        "worker_hijack_root_logger": False,
        # Task events for Flower and `celery events` (three messages per task from the worker);
        # sent events (one more per publish) only when asked for: they take the API off the
        # direct publish.
        "worker_send_task_events": config["CELERY_TASK_EVENTS"],
        "task_send_sent_event": config["CELERY_TASK_SENT_EVENT"],
    }


def create_celery(
    name: str, config: Mapping[str, Any], queues: Iterable[str], app_cls: type[Celery], task_cls: type[Task]
) -> Celery:
    private_dir(Path(config["DATA_DIR"]))  # beat keeps its schedule there
    celery = app_cls(name, task_cls=task_cls, set_as_current=True)
    celery.conf.update(celery_settings(config, sorted(set(queues))))
    celery.set_default()
    return celery
