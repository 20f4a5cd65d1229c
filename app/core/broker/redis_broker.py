"""Redis as the broker: Tasker's kombu transport, a priority per list, and one LPUSH per publish."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from celery import Celery

from app.core.broker.base import Broker, Message, broker_errors
from app.core.broker.redis_writer import RedisQueueWriter, unsupported
from app.core.errors import BrokerUnavailable
from app.core.ports import MAX_PRIORITY
from config import ConfigError

logger = logging.getLogger(__name__)


class RedisBroker(Broker):
    kind = "redis"
    # A worker that survives a Redis restart, and cheaper publishing (the module says how).
    transport = "app.core.broker.redis_transport:Transport"
    is_redis: ClassVar[bool] = True

    @classmethod
    def transport_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
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

    @classmethod
    def priority(cls, priority: int) -> int:
        """kombu's priority steps serve 0 first, so the scale is turned over."""
        return MAX_PRIORITY - priority

    @classmethod
    def check(cls, config: Mapping[str, Any], task_types: Iterable[Any], retry_delay: float) -> None:
        """Refuse a visibility timeout that could redeliver a message still legitimately held.

        A worker holds a message unacknowledged while the task runs (up to its hard time limit) or
        waits for its retry (up to the longest retry delay); Redis hands it to another worker after
        the visibility timeout, so that must be longer.
        """
        longest = max(task_types, key=lambda t: t.time_limit)
        needed = longest.time_limit + retry_delay
        timeout = config["BROKER_VISIBILITY_TIMEOUT_SECONDS"]
        if timeout <= needed:
            raise ConfigError(
                f"BROKER_VISIBILITY_TIMEOUT_SECONDS is {timeout} s but must be above the longest hard "
                f"time limit ({longest.time_limit} s, {longest.name}) plus the longest retry delay "
                f"({retry_delay:g} s): set it to at least {math.floor(needed) + 1}."
            )

    def __init__(self, celery: Celery):
        super().__init__(celery)
        self.writer: RedisQueueWriter | None = None
        blockers = unsupported(celery)
        if not blockers:
            # One LPUSH of the very message send_task would write (see redis_writer.py).
            self.writer = RedisQueueWriter(
                celery.conf.broker_url, celery.conf.broker_transport_options, celery.thread_oid
            )
        elif str(celery.conf.broker_url).startswith("redis://"):
            logger.warning("publishing through send_task, as these are set: %s", "; ".join(blockers))

    def enqueue(self, message: Message) -> None:
        if self.writer is None or message.eta is not None:  # the writer sends no ETA: Celery's path
            return super().enqueue(message)
        with broker_errors():
            self.writer.push(*self._writer_message(message))

    def enqueue_many(self, messages: Sequence[Message]) -> list[BrokerUnavailable | None]:
        """One round trip, all or none."""
        if self.writer is None or any(message.eta is not None for message in messages):
            return super().enqueue_many(messages)
        pushes = [self.writer.message(*self._writer_message(message)) for message in messages]
        try:
            with broker_errors():
                self.writer.push_many(pushes)
        except BrokerUnavailable as exc:
            return [exc] * len(messages)
        return [None] * len(messages)

    def _writer_message(self, message: Message) -> tuple[Any, ...]:
        task_type = message.task_type
        return (
            task_type.celery_name,
            str(message.task_id),
            message.parameters,
            task_type.queue,
            self.priority(message.priority),
            *message.limits,
            message.all_headers,
        )
