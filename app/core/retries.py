"""A retry policy: how many times a failed task runs again, and after which failures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# "any": every failure but a cancel; "transient": TransientError only (upstream 429/5xx, timeouts).
RETRY_ON = ("any", "transient")


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 0
    on: str = "transient"

    @classmethod
    def stored(cls, value: Mapping[str, Any]) -> RetryPolicy:
        """The policy a task's row holds (given at submit)."""
        return cls(int(value["max_retries"]), value["on"])

    def as_dict(self) -> dict[str, Any]:
        return {"max_retries": self.max_retries, "on": self.on}

    def retries_any_failure(self, retried: int) -> bool:
        """Whether a failure that is not a TransientError runs again, after `retried` retries."""
        return self.on == "any" and retried < self.max_retries


def retry_policy_of(row_policy: Mapping[str, Any] | None, task_type: Any) -> RetryPolicy:
    """The policy a task runs under: its own (given at submit), else its type's, else none."""
    if row_policy:
        return RetryPolicy.stored(row_policy)
    return task_type.retry_policy if task_type else RetryPolicy()
