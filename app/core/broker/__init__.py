"""The broker wing: one `Broker` interface and a class for each kind of broker Tasker runs on,
chosen once from the settings (as flower's `Broker` factory picks its class from the URL), with
the kombu transports and the wire-level writers they use beside them.

- `RedisBroker` (redis_broker.py): kombu priority lists, one LPUSH per publish (redis_writer.py),
  Tasker's Redis transport (redis_transport.py);
- `AmqpBroker` (amqp_broker.py): publisher confirms, priority queues, batches confirmed with one
  wait (amqp_confirms.py);
- `FilesystemBroker` (filesystem_broker.py): the embedded stack's folders, with Tasker's
  filesystem transport (filesystem_transport.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.broker.amqp_broker import AmqpBroker
from app.core.broker.base import (
    DELIVER_TASK,
    WEBHOOK_QUEUE,
    Broker,
    Message,
    broker_errors,
    headers,
)
from app.core.broker.filesystem_broker import FilesystemBroker
from app.core.broker.redis_broker import RedisBroker

KINDS: dict[str, type[Broker]] = {cls.kind: cls for cls in (RedisBroker, AmqpBroker, FilesystemBroker)}

__all__ = [
    "DELIVER_TASK",
    "KINDS",
    "WEBHOOK_QUEUE",
    "Broker",
    "Message",
    "broker_class",
    "broker_errors",
    "headers",
]


def broker_class(config: Mapping[str, Any]) -> type[Broker]:
    """The class of the broker CELERY_BROKER_URL names (BROKER_KIND: redis, amqp or filesystem)."""
    return KINDS[config["BROKER_KIND"]]
