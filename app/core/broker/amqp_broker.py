"""RabbitMQ as the broker: publisher confirms, priority queues, and batches confirmed with one wait."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery import Celery
from kombu import Producer

from app.core.broker import amqp_confirms
from app.core.broker.base import CONFIRM_TIMEOUT_SECONDS, Broker, Message
from app.core.errors import BrokerUnavailable
from app.core.ports import MAX_PRIORITY


class AmqpBroker(Broker):
    kind = "amqp"

    @classmethod
    def transport_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        # Publisher confirms: a publish returns once RabbitMQ has the message (persistent, on a
        # durable queue), and raises if it refuses it; so a 202 means the broker holds it.
        return {"confirm_publish": True}

    @classmethod
    def queue_arguments(cls) -> dict[str, int]:
        # RabbitMQ honours priorities only on queues declared with a maximum.
        return {"x-max-priority": MAX_PRIORITY}

    @classmethod
    def priority(cls, priority: int) -> int:
        """RabbitMQ serves the highest first, as Tasker counts."""
        return priority

    def __init__(self, celery: Celery):
        super().__init__(celery)
        self.confirms: amqp_confirms.ConfirmedBatches | None = None
        if amqp_confirms.usable(celery):
            # A batch's messages published together and confirmed with one wait (amqp_confirms.py).
            self.confirms = amqp_confirms.ConfirmedBatches(celery, CONFIRM_TIMEOUT_SECONDS)

    def enqueue_many(self, messages: Sequence[Message]) -> list[BrokerUnavailable | None]:
        """All published, then one wait for their confirms, each with its own outcome."""
        if self.confirms is None:
            return super().enqueue_many(messages)

        def send(producer: Producer, message: Message) -> None:
            self.send_task(message, producer)

        return self.confirms.send_confirmed(send, messages)
