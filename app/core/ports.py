"""What the core needs from the task catalog, as protocols the tests can stand in for (the
broker's is app/core/broker's Broker class)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

DEFAULT_PRIORITY = 5  # "normal"; 0 is "low", 9 "high"
MAX_PRIORITY = 9
MAX_SCHEDULE_DAYS = 30  # how far ahead run_at and countdown may reach


class TaskType(Protocol):
    name: str
    queue: str
    time_limit: int
    priority: int
    concurrency: Any  # a ConcurrencySpec (app/core/concurrency.py) or None

    def max_starts(self, max_deliveries: int, policy: Any = None) -> int: ...

    def validate(self, parameters: Any, field: str = ...) -> dict[str, Any]: ...


class Registry(Protocol):
    def resolve(self, name: Any, field: str = ...) -> TaskType: ...

    def __iter__(self) -> Iterator[TaskType]: ...
