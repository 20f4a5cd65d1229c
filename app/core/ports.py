"""What the core needs from the task catalog and the broker, as protocols the tests can stand in for."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
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


class TaskQueue(Protocol):
    """Enqueues and revokes task messages (app/core/broker's Message); failures are BrokerUnavailable."""

    def enqueue(self, message: Any) -> None: ...

    def enqueue_many(self, messages: Sequence[Any]) -> list[Any]: ...

    def revoke(self, task_id: uuid.UUID) -> None: ...


class BrokerProbe(Protocol):
    """What monitoring and the recovery sweep ask the broker and the workers."""

    is_redis: bool

    def ping(self) -> None: ...

    def queue_depths(self, queues: list[str]) -> dict[str, int]: ...

    def ping_workers(self, timeout: float = 1.0) -> int: ...

    def running_tasks(self, timeout: float = 1.0) -> dict[str, set[str]]: ...
