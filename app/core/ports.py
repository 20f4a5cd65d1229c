"""What the core needs from the task catalog and the broker, as protocols the tests can stand in for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Protocol

DEFAULT_PRIORITY = 5  # "normal"; 0 is "low", 9 "high"
MAX_PRIORITY = 9
MAX_SCHEDULE_DAYS = 30  # how far ahead run_at and countdown may reach


class TaskType(Protocol):
    name: str
    queue: str
    time_limit: int

    def max_starts(self, max_deliveries: int, policy: Any = None) -> int: ...

    def validate(self, parameters: Any, field: str = ...) -> dict[str, Any]: ...


class Registry(Protocol):
    def resolve(self, name: Any, field: str = ...) -> TaskType: ...

    def __iter__(self) -> Iterator[TaskType]: ...


class Publisher(Protocol):
    """Publishes and revokes task messages; failures are BrokerUnavailable."""

    broker_kind: str  # redis, amqp or filesystem

    def publish(
        self, task_type: Any, task_id: uuid.UUID, parameters: dict[str, Any], priority: int = ...
    ) -> None: ...

    def publish_many(self, messages: list[tuple[Any, uuid.UUID, dict[str, Any], int, Any]]) -> list[Any]: ...

    def revoke(self, task_id: uuid.UUID) -> None: ...


class BrokerProbe(Protocol):
    """What monitoring and the recovery sweep ask the broker and the workers."""

    broker_kind: str

    def ping(self) -> None: ...

    def queue_depths(self, queues: list[str]) -> dict[str, int]: ...

    def ping_workers(self, timeout: float = 1.0) -> int: ...

    def running_tasks(self, timeout: float = 1.0) -> dict[str, set[str]]: ...
