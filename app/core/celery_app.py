"""Celery built from the Flask config (the Flask docs' pattern) and the publisher the API uses."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import amqp.exceptions
import redis
from celery import Celery, Task
from kombu import Queue
from kombu.exceptions import ChannelError, KombuError

from app.core import amqp_publish, logs
from app.core.errors import BrokerUnavailable
from app.core.ports import DEFAULT_PRIORITY, MAX_PRIORITY
from app.core.private import private_dir
from app.core.redis_publish import RedisQueueWriter, unsupported
from config import ConfigError

logger = logging.getLogger(__name__)

PUBLISH_RETRY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# Tasker's own transports, chosen for its Celery app through Celery's broker_transport setting
# (kombu's aliases for the rest of the process stay as they are); each module says why.
TRANSPORTS = {
    "redis": "app.core.redis_transport:Transport",
    "filesystem": "app.core.filesystem_transport:Transport",
}
# Webhook deliveries are sent by this task, from a queue of their own: a slow receiver never
# holds a worker slot that user tasks wait for.
DELIVER_TASK = "tasker.deliver_webhook"
WEBHOOK_QUEUE = "webhooks"
# How long a publish waits for RabbitMQ's confirm before it counts as failed (a 503).
CONFIRM_TIMEOUT_SECONDS = 5.0
# What a broker call can raise when the broker is away or refuses: kombu's errors, sockets,
# redis-py's own (the direct publish, and kombu's Redis transport lets some through), and
# py-amqp's (a channel or connection error, or a publish RabbitMQ nacked).
BROKER_ERRORS = (
    KombuError, OSError, redis.RedisError, amqp.exceptions.AMQPError, amqp.exceptions.MessageNacked
)  # fmt: skip


def broker_priority(kind: str, priority: int) -> int | None:
    """Tasker's priority (9 is most urgent) as the broker understands it.

    Redis (kombu's priority steps) serves 0 first, so the scale is turned over; AMQP serves the
    highest first; the filesystem transport has no priorities.
    """
    return {"redis": MAX_PRIORITY - priority, "amqp": priority}.get(kind)


@contextmanager
def broker_errors() -> Iterator[None]:
    """Any failure to reach the broker, as BrokerUnavailable (a 503 naming the broker)."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc


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
    return {
        "broker_url": config["CELERY_BROKER_URL"],
        "broker_transport": TRANSPORTS.get(config["BROKER_KIND"]),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": transport_options(config),
        "beat_schedule_filename": str(Path(config["DATA_DIR"]) / "celerybeat-schedule"),
        "result_backend": None,  # PostgreSQL holds the outcomes
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_queues": [
            Queue(name, queue_arguments=_queue_arguments(config["BROKER_KIND"])) for name in queues
        ],
        "task_default_queue": "default",
        "task_create_missing_queues": False,
        "worker_prefetch_multiplier": 1,
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


def transport_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Options for the broker's transport; the filesystem one lives under the data directory."""
    if config["BROKER_KIND"] == "filesystem":
        root = private_dir(Path(config["DATA_DIR"]) / "broker")
        folders = {name: root / name for name in ("queue", "control", "processed")}
        for folder in folders.values():
            private_dir(folder)
        return {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "control_folder": str(folders["control"]),
            "processed_folder": str(folders["processed"]),
            # Consumers are woken when a message arrives (filesystem_transport.py); this is only how
            # long a lost wake could be missed.
            "polling_interval": 1.0,
        }
    if config["BROKER_KIND"] == "redis":
        return {
            # Redis redelivers a message unacked this long: keep it above the longest hard time limit.
            "visibility_timeout": config["BROKER_VISIBILITY_TIMEOUT_SECONDS"],
            "socket_connect_timeout": 2,
            "socket_timeout": 10,
            # One Redis list per priority, always read most urgent first (Celery's recipe).
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
            "queue_order_strategy": "priority",
        }
    if config["BROKER_KIND"] == "amqp":
        # Publisher confirms: a publish returns once RabbitMQ has the message (persistent, on a
        # durable queue), and raises if it refuses it; so a 202 means the broker holds it.
        return {"confirm_publish": True}
    return {}


def check_visibility_timeout(
    config: Mapping[str, Any], task_types: Iterable[Any], retry_delay: float
) -> None:
    """Refuse a Redis visibility timeout that could redeliver a message still legitimately held.

    A worker holds a message unacknowledged while the task runs (up to its hard time limit) or
    waits for its retry (up to the longest retry delay); Redis hands it to another worker after
    the visibility timeout, so that must be longer.
    """
    if config["BROKER_KIND"] != "redis":
        return
    longest = max(task_types, key=lambda t: t.time_limit)
    needed = longest.time_limit + retry_delay
    timeout = config["BROKER_VISIBILITY_TIMEOUT_SECONDS"]
    if timeout <= needed:
        raise ConfigError(
            f"BROKER_VISIBILITY_TIMEOUT_SECONDS is {timeout} s but must be above the longest hard "
            f"time limit ({longest.time_limit} s, {longest.name}) plus the longest retry delay "
            f"({retry_delay:g} s): set it to at least {math.floor(needed) + 1}."
        )


def create_celery(
    name: str, config: Mapping[str, Any], queues: Iterable[str], app_cls: type[Celery], task_cls: type[Task]
) -> Celery:
    private_dir(Path(config["DATA_DIR"]))  # beat keeps its schedule there
    celery = app_cls(name, task_cls=task_cls, set_as_current=True)
    celery.conf.update(celery_settings(config, sorted(set(queues))))
    celery.set_default()
    return celery


class CeleryPublisher:
    """Sends task messages (id = row id) and asks the broker and workers; failures become a 503."""

    def __init__(self, celery: Celery, broker_kind: str):
        self.celery = celery
        self.broker_kind = broker_kind
        self.direct: RedisQueueWriter | None = None
        self.batches: amqp_publish.ConfirmedBatches | None = None
        if broker_kind == "amqp" and amqp_publish.usable(celery):
            # A batch's messages published together and confirmed with one wait (amqp_publish.py).
            self.batches = amqp_publish.ConfirmedBatches(celery, CONFIRM_TIMEOUT_SECONDS)
        if broker_kind == "redis":
            blockers = unsupported(celery)
            if not blockers:
                # One LPUSH of the very message send_task would write (see redis_publish.py).
                self.direct = RedisQueueWriter(
                    celery.conf.broker_url, celery.conf.broker_transport_options, celery.thread_oid
                )
            elif str(celery.conf.broker_url).startswith("redis://"):
                logger.warning("publishing through send_task, as these are set: %s", "; ".join(blockers))

    def publish(
        self,
        task_type: Any,
        task_id: uuid.UUID,
        parameters: dict[str, Any],
        priority: int = DEFAULT_PRIORITY,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`priority`: 0 (low) to 9 (high). The request id bound to the caller's log context (or
        given in `headers`) goes in the message's headers, so the worker's log lines for this
        task carry it too."""
        message = (
            task_type,
            task_id,
            parameters,
            priority,
            message_headers() if headers is None else headers,
        )
        with broker_errors():
            if self.direct is None:
                self._send(*message)
            else:
                self.direct.publish(*self._direct_message(*message))

    def publish_many(
        self, messages: list[tuple[Any, uuid.UUID, dict[str, Any], int, dict[str, str] | None]]
    ) -> list[Exception | None]:
        """Publish several (task type, id, parameters, priority, headers): for each, None if the
        broker has it, else the BrokerUnavailable. On Redis one round trip, all or none; on
        RabbitMQ all published, then one wait for their confirms, each with its own outcome;
        elsewhere one publish each, and after the first refusal the rest are not tried."""
        if self.direct is not None:
            pushes = [self.direct.message(*self._direct_message(*message)) for message in messages]
            try:
                with broker_errors():
                    self.direct.publish_many(pushes)
            except BrokerUnavailable as exc:
                return [exc] * len(messages)
            return [None] * len(messages)
        if self.batches is not None:
            return self.batches.publish(lambda producer, message: self._send(*message, producer), messages)
        outcomes: list[Exception | None] = []
        for message in messages:
            if outcomes and outcomes[-1] is not None:
                outcomes.append(outcomes[-1])
                continue
            try:
                with broker_errors():
                    self._send(*message)
                outcomes.append(None)
            except BrokerUnavailable as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _direct_message(
        task_type: Any,
        task_id: uuid.UUID,
        parameters: dict[str, Any],
        priority: int,
        headers: dict[str, str] | None,
    ) -> tuple[Any, ...]:
        return (
            task_type.celery_name,
            str(task_id),
            parameters,
            task_type.queue,
            broker_priority("redis", priority),
            task_type.time_limit,
            task_type.soft_time_limit,
            headers,
        )

    def send_task(
        self, task_type: Any, task_id: uuid.UUID, parameters: dict[str, Any], priority: int = DEFAULT_PRIORITY
    ) -> None:
        """Publish through Celery's own send_task, as publish() does where it cannot LPUSH itself."""
        with broker_errors():
            self._send(task_type, task_id, parameters, priority, message_headers())

    def _send(
        self,
        task_type: Any,
        task_id: uuid.UUID,
        parameters: dict[str, Any],
        priority: int,
        headers: dict[str, str] | None,
        producer: Any = None,
    ) -> None:
        """Celery's send_task; with `producer`, on that producer's channel, once (the caller
        retries and waits for the confirms)."""
        once = {"producer": producer, "retry": False} if producer is not None else {}
        self.celery.send_task(
            task_type.celery_name,
            kwargs=parameters,
            task_id=str(task_id),
            queue=task_type.queue,
            priority=broker_priority(self.broker_kind, priority),
            soft_time_limit=task_type.soft_time_limit,
            time_limit=task_type.time_limit,
            retry_policy=PUBLISH_RETRY,
            confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
            headers=headers,
            **once,
        )

    def publish_delivery(self, delivery_id: uuid.UUID, time_limit: float | None = None) -> None:
        """A webhook delivery's attempt, on the `webhooks` queue (see app/core/webhooks.py);
        `time_limit`: the attempt's hard limit (the soft one comes 5 s before)."""
        limits = {"time_limit": time_limit, "soft_time_limit": time_limit - 5} if time_limit else {}
        with broker_errors():
            self.celery.send_task(
                DELIVER_TASK,
                args=[str(delivery_id)],
                queue=WEBHOOK_QUEUE,
                retry_policy=PUBLISH_RETRY,
                confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
                headers=message_headers(),
                **limits,
            )

    def revoke(self, task_id: uuid.UUID) -> None:
        """Ask workers not to run the task (best effort; the claim check is what enforces it)."""
        with broker_errors():
            self.celery.control.revoke(str(task_id))

    def queue_depths(self, queues: list[str]) -> dict[str, int]:
        """Messages waiting in the broker, per queue (a queue never used counts 0)."""
        with broker_errors(), self.celery.connection_for_read() as conn:
            return {name: _message_count(conn, name) for name in queues}

    def ping_workers(self, timeout: float = 1.0) -> int:
        """1 as soon as a worker answers a ping, 0 if none does within `timeout` seconds."""
        with broker_errors():
            return len(self.celery.control.ping(timeout=timeout, limit=1) or [])

    def running_tasks(self, timeout: float = 1.0) -> dict[str, set[str]]:
        """The ids of the tasks each worker that answers within `timeout` is running."""
        with broker_errors():
            replies = self.celery.control.inspect(timeout=timeout).active() or {}
        return {worker: {request["id"] for request in requests} for worker, requests in replies.items()}

    def ping(self) -> None:
        with broker_errors(), self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
            conn.default_channel  # noqa: B018 - opening the channel is the round trip


def message_headers() -> dict[str, str] | None:
    """The headers a message carries: the request id of the caller's log context, if any."""
    request_id = logs.context().get("request_id")
    return {"request_id": request_id} if request_id else None


def _message_count(conn: Any, queue: str) -> int:
    channel = conn.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # not declared yet: nothing was ever queued there
    finally:
        channel.close()


def _queue_arguments(broker_kind: str) -> dict[str, int] | None:
    # RabbitMQ honours priorities only on queues declared with a maximum.
    return {"x-max-priority": MAX_PRIORITY} if broker_kind == "amqp" else None
