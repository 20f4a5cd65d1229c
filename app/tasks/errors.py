"""What a task raises to say how it ended; the callbacks turn each into the row's outcome."""

from __future__ import annotations


class TaskFailed(Exception):
    """A failure that retrying will not fix; the message is shown to the client."""


class TransientError(Exception):
    """A failure worth retrying (connection, timeout, 429, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TaskCancelled(Exception):
    """Raised between steps when the task's cancellation was requested; the row becomes CANCELLED."""
