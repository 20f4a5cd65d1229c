"""Submitting from Python as Celery users write it: `sum_two_numbers.delay(a=1, b=2)` or
`celery.send_task("tasker.sum_two_numbers", kwargs=...)` in code that has the Tasker app.

Celery's own path would send a message with no row behind it, which a worker refuses (nothing
would record its outcome). Every Tasker task's apply_async ends in the app's send_task, so
TaskerCelery.send_task sends a call that names no task id through TaskManager.submit instead,
the API's own path: validated, the row first, then the message with the row's id. A call that
names a task id (Tasker's publisher, Celery's retries) is Celery's as before.

What comes back is a TaskHandle: its id is the task's UUID, and it reads the record (there is no
Celery result backend), waiting on the change notifications as `?wait=` does.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError

from app.core.task_manager import SubmitRequest
from app.models.task import TERMINAL, TaskStatus
from app.tasks.errors import TaskFailed

PYTHON_OWNER = "default"
# Options of apply_async/send_task a submit cannot honour: refused rather than silently dropped.
UNSUPPORTED = ("link", "link_error", "chain", "chord", "expires", "group_id")
TASK_FUNCTIONS = "app.tasks.task_functions."


class TaskHandle:
    """What .delay(), apply_async() and send_task() return for a Tasker task."""

    def __init__(self, tasks: Any, task_id: uuid.UUID):
        self.tasks = tasks
        self.id = self.task_id = str(task_id)

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    def info(self) -> dict[str, Any]:
        """The task resource, as GET /api/v1/tasks/<id> answers it."""
        return self.tasks.get(uuid.UUID(self.id))

    @property
    def status(self) -> str:
        return self.info()["status"]

    state = status

    @property
    def result(self) -> Any:
        return self.info()["result"]

    def ready(self) -> bool:
        return self.status in TERMINAL

    def successful(self) -> bool:
        return self.status == TaskStatus.COMPLETED

    def failed(self) -> bool:
        return self.status == TaskStatus.FAILED

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """The result once the task is terminal. FAILED or CANCELLED raises TaskFailed with its
        error (with `propagate=False`, returns the error); past `timeout` seconds, Celery's
        TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else min(30.0, deadline - time.monotonic())
            if left <= 0:
                raise CeleryTimeoutError(f"task {self.id} did not finish within {timeout:g} s")
            task = self.tasks.get(uuid.UUID(self.id), wait_seconds=left)
            if task["status"] in TERMINAL:
                break
        if task["status"] == TaskStatus.COMPLETED:
            return task["result"]
        error = task["error"] or f"The task was {task['status']}."
        if propagate:
            raise TaskFailed(error)
        return error


def task_type_for(registry: Any, name: str) -> Any:
    """The task type a send_task name means: its Celery name, or its function's module path (how
    the reference system called it); None for anything else."""
    found = registry.for_celery_task(name)
    if found is None and name.startswith(TASK_FUNCTIONS):
        found = registry.for_celery_task("tasker." + name[len(TASK_FUNCTIONS) :])
    return found


def parameters_of(function: Any, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None) -> Any:
    """The task's parameters by name: positional arguments are named after the function's."""
    parameters = dict(kwargs or {})
    if args:
        names = [
            p.name
            for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "ctx"
        ]
        if len(args) > len(names):
            raise TypeError(f"{len(args)} positional arguments given; the task takes {', '.join(names)}")
        for name, value in zip(names, args, strict=False):
            if name in parameters:
                raise TypeError(f"{name} given twice")
            parameters[name] = value
    return parameters


def submit_call(
    tasks: Any, task_type: Any, function: Any, args: Any, kwargs: Any, options: dict[str, Any]
) -> TaskHandle:
    """Submit a send_task call through TaskManager.submit (InvalidInput names a bad parameter)."""
    refused = sorted(name for name in UNSUPPORTED if options.get(name))
    if refused:
        raise TypeError(f"{', '.join(refused)}: not supported for Tasker tasks (each is a row of its own)")
    eta = options.get("eta")
    if isinstance(eta, datetime) and eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)  # Celery reads a naive eta as UTC too
    extra = {
        key: options[key]
        for key in ("priority", "idempotency_key", "webhook")
        if options.get(key) is not None
    }
    request = SubmitRequest(
        task_type.name,
        parameters_of(function, args, kwargs),
        countdown=options.get("countdown"),
        run_at=eta,
        owner=options.get("owner") or PYTHON_OWNER,
        **extra,
    )
    submission = tasks.submit(request)
    return TaskHandle(tasks, submission.id)
