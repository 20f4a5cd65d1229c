"""What Tasker needs from a broker, and how Celery gives it; each kind of broker overrides what differs.

Class-level: the kombu transport Tasker selects for its own Celery app, the transport options,
the queue arguments, how a priority is written, and the start-up check of the settings. On an
instance (one per Celery app): enqueue one task message or many (each with its own outcome),
a webhook delivery's attempt, revokes, and what monitoring and the recovery sweep ask.
Any failure to reach the broker is BrokerUnavailable (a 503 naming the broker).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import amqp.exceptions
import redis
from celery import Celery
from kombu.exceptions import ChannelError, KombuError

from app.core import logs
from app.core.errors import BrokerUnavailable
from app.core.ports import DEFAULT_PRIORITY

PUBLISH_RETRY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
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


@dataclass(frozen=True)
class Message:
    """One task message: its row's id is the message's task id."""

    task_type: Any
    task_id: uuid.UUID
    parameters: dict[str, Any]
    priority: int = DEFAULT_PRIORITY  # 0 (low) to 9 (high)
    timeout_seconds: int | None = None  # its own hard time limit (given at submit); None: its type's
    # The request id of the caller's log context, taken on the caller's thread (see headers()).
    headers: dict[str, str] | None = None
    sealed: str | None = None  # the secrets its parameters show masked, sealed (app/core/sealing.py)
    eta: datetime | None = None  # not to start before (a rate limit's token); None: at once

    @property
    def all_headers(self) -> dict[str, str] | None:
        """The message's headers: the request id, and the sealed secrets (a worker reads them
        from its request as `tasker_sealed`)."""
        if self.sealed is None:
            return self.headers
        return {**(self.headers or {}), "tasker_sealed": self.sealed}

    @property
    def limits(self) -> tuple[int, int]:
        """The run's hard and soft time limits: its own (the soft one at two thirds), else its type's."""
        if self.timeout_seconds:
            return self.timeout_seconds, max(1, self.timeout_seconds * 2 // 3)
        return self.task_type.time_limit, self.task_type.soft_time_limit


def headers() -> dict[str, str] | None:
    """The headers a message carries: the request id of the caller's log context, if any, so the
    worker's log lines for the task carry it too."""
    request_id = logs.context().get("request_id")
    return {"request_id": request_id} if request_id else None


@contextmanager
def broker_errors() -> Iterator[None]:
    """Any failure to reach the broker, as BrokerUnavailable (a 503 naming the broker)."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(str(exc) or type(exc).__name__) from exc


class Broker:
    kind: ClassVar[str]
    transport: ClassVar[str | None] = None  # Celery's broker_transport; None: kombu's own
    pool: ClassVar[str] = "prefork"  # Celery's worker_pool, unless the command line says --pool
    embedded: ClassVar[bool] = False  # lives in the data directory: `make run` starts the worker
    is_redis: ClassVar[bool] = False  # /health checks it with the Redis cache

    @classmethod
    def transport_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    @classmethod
    def queue_arguments(cls) -> dict[str, int] | None:
        return None

    @classmethod
    def priority(cls, priority: int) -> int | None:
        """Tasker's priority (9 is most urgent) as the broker understands it; None: it has none."""
        return None

    @classmethod
    def has_priorities(cls) -> bool:
        """Whether a task's priority changes when it runs (the filesystem broker takes arrival order)."""
        return cls.priority(0) is not None

    @classmethod
    def check(cls, config: Mapping[str, Any], task_types: Iterable[Any], retry_delay: float) -> None:
        """Refuse, with a ConfigError, settings this broker cannot work with."""

    def __init__(self, celery: Celery):
        self.celery = celery

    def enqueue(self, message: Message) -> None:
        """The message in the broker, or BrokerUnavailable."""
        with broker_errors():
            self.send_task(message)

    def enqueue_many(self, messages: Sequence[Message]) -> list[BrokerUnavailable | None]:
        """For each message, None if the broker has it, else the BrokerUnavailable; one send each,
        and after the first refusal the rest are not tried."""
        outcomes: list[BrokerUnavailable | None] = []
        for message in messages:
            if outcomes and outcomes[-1] is not None:
                outcomes.append(outcomes[-1])
                continue
            try:
                with broker_errors():
                    self.send_task(message)
                outcomes.append(None)
            except BrokerUnavailable as exc:
                outcomes.append(exc)
        return outcomes

    def send_task(self, message: Message, producer: Any = None) -> None:
        """Through Celery's own send_task, its errors as they come; with `producer`, on that
        producer's channel, once (the caller retries and waits for the confirms)."""
        once = {"producer": producer, "retry": False} if producer is not None else {}
        task_type = message.task_type
        time_limit, soft_time_limit = message.limits
        self.celery.send_task(
            task_type.celery_name,
            kwargs=message.parameters,
            task_id=str(message.task_id),
            queue=task_type.queue,
            priority=self.priority(message.priority),
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            retry_policy=PUBLISH_RETRY,
            confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
            headers=message.all_headers,
            eta=message.eta,
            **once,
        )

    def enqueue_delivery(self, delivery_id: uuid.UUID, time_limit: float | None = None) -> None:
        """A webhook delivery's attempt, on the `webhooks` queue (see app/core/webhooks/deliveries.py);
        `time_limit`: the attempt's hard limit (the soft one comes 5 s before)."""
        limits = {"time_limit": time_limit, "soft_time_limit": time_limit - 5} if time_limit else {}
        with broker_errors():
            self.celery.send_task(
                DELIVER_TASK,
                args=[str(delivery_id)],
                queue=WEBHOOK_QUEUE,
                retry_policy=PUBLISH_RETRY,
                confirm_timeout=CONFIRM_TIMEOUT_SECONDS,
                headers=headers(),
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


def _message_count(conn: Any, queue: str) -> int:
    channel = conn.channel()
    try:
        return channel.queue_declare(queue=queue, passive=True).message_count
    except ChannelError:
        return 0  # not declared yet: nothing was ever queued there
    finally:
        channel.close()
