"""Domain errors: the API layer turns each into one JSON response."""

from __future__ import annotations

from typing import Any


class TaskerError(Exception):
    """Base class; `status` and `code` say how the API reports it."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(TaskerError):
    status = 400
    code = "validation_error"


class UnknownTaskType(InvalidInput):
    code = "unknown_task"


class NotFound(TaskerError):
    status = 404
    code = "not_found"


class TaskNotFound(NotFound):
    pass


class ScheduleNotFound(NotFound):
    pass


class Conflict(TaskerError):
    status = 409
    code = "conflict"


class DependencyUnavailable(TaskerError):
    """A service Tasker needs (database, broker) did not answer."""

    status = 503
    code = "service_unavailable"

    def __init__(self, dependency: str, reason: str):
        super().__init__(
            f"The {dependency} is unavailable; try again shortly.",
            {"dependency": dependency, "reason": reason},
        )
        self.dependency = dependency


class ServiceBusy(TaskerError):
    """This server has no room for the request now (e.g. every event-stream slot is taken)."""

    status = 503
    code = "busy"

    def __init__(self, message: str, details: dict[str, Any] | None = None, retry_after: int = 1):
        super().__init__(message, details)
        self.retry_after = retry_after


class DatabaseUnavailable(DependencyUnavailable):
    def __init__(self, reason: str):
        super().__init__("database", reason)


class BrokerUnavailable(DependencyUnavailable):
    def __init__(self, reason: str):
        super().__init__("broker", reason)


def describe_messages(messages: Any, prefix: str = "") -> list[str]:
    """Flatten marshmallow's nested messages into 'field: rule' sentences."""
    if isinstance(messages, dict):
        lines: list[str] = []
        for field, inner in messages.items():
            # A nested object's own rule ("_schema") is the field's: "webhook: ...", not "webhook._schema".
            name = prefix if field == "_schema" and prefix else f"{prefix}.{field}" if prefix else str(field)
            lines.extend(describe_messages(inner, name))
        return lines
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{prefix}: {' '.join(messages)}" if prefix else " ".join(messages)]
    if isinstance(messages, list):
        return [line for m in messages for line in describe_messages(m, prefix)]
    return [f"{prefix}: {messages}" if prefix else str(messages)]
