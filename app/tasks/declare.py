"""`@task`: one declaration makes a task type, the built-in ones and a user's alike.

The decorator checks what it is given at import time (a wrong declaration stops the service
from starting with a message naming the function and the rule), makes the Celery task
(`tasker.<name>`), and keeps the declaration until app/tasks/discovery.py builds the catalogue
from the modules the deployment names.
"""

from __future__ import annotations

import inspect
import re
import threading
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from celery import shared_task
from marshmallow import Schema

from app.core import concurrency
from app.core.concurrency import ConcurrencySpec
from app.core.errors import InvalidInput
from app.core.ports import MAX_PRIORITY
from app.core.rate_limits import NAME as LIMIT_NAME
from app.core.rate_limits import NAME_RULE as LIMIT_NAME_RULE
from app.core.retries import RETRY_ON
from app.tasks.base import RunContext
from app.tasks.hints import DeclarationError, schema_for

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
NAME_RULE = "1 to 64 of a-z, 0-9 and _, starting with a letter"
QUEUE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# Celery names of Tasker's own housekeeping tasks: no task type may take them.
RESERVED = ("recovery_sweep", "publish_due", "deliver_webhook")
PRIORITIES = {"low": 0, "normal": 5, "high": 9}
MAX_TIME_LIMIT = 86_400


@dataclass(frozen=True)
class Declaration:
    """A task type as declared; limits and retries left unsaid come from the settings."""

    name: str
    module: str
    function: Callable[..., Any]
    schema: Schema
    description: str
    aliases: tuple[str, ...] = ()
    queue: str = "default"
    priority: int = PRIORITIES["normal"]
    time_limit: int | None = None  # None: DEFAULT_TASK_TIMEOUT
    soft_time_limit: int | None = None  # None: two thirds of the hard one
    max_retries: int | None = 0  # None: MAX_RETRY_ATTEMPTS
    retry_on: str = "transient"
    secrets: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]] | None = None
    concurrency: ConcurrencySpec | None = (
        None  # its tasks' concurrency key; None: none unless a submit gives one
    )
    limits: tuple[str, ...] = ()  # the named rate limits its runs consume (app/core/rate_limits.py)

    @property
    def celery_name(self) -> str:
        return f"tasker.{self.name}"


_declared: dict[str, Declaration] = {}
_lock = threading.Lock()


def declared() -> list[Declaration]:
    """Every declaration this process has imported, in the order they were made."""
    with _lock:
        return list(_declared.values())


def task(
    name: str | Callable[..., Any] | None = None,
    *,
    parameters: type[Schema] | Schema | None = None,
    queue: str = "default",
    priority: int | str = "normal",
    time_limit: int | None = None,
    soft_time_limit: int | None = None,
    retry_policy: Mapping[str, Any] | None = None,
    description: str | None = None,
    aliases: tuple[str, ...] | list[str] = (),
    secrets: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]] | None = None,
    concurrency: Mapping[str, Any] | None = None,
    limits: tuple[str, ...] | list[str] = (),
) -> Any:
    """Declare a task type: `@task` or `@task(name=..., parameters=..., ...)` on a function.

    The function's parameters are the task's; a first parameter annotated `RunContext` gets the
    run's context instead (progress, the cancellation check). What it returns (JSON) is the
    result; TransientError asks for a retry under its retry policy; TaskFailed fails it.

    - `parameters`: a marshmallow schema (class or instance); without one, the type hints.
    - `queue`, `priority` (low, normal, high or 0-9): where and how its tasks are queued.
    - `time_limit`, `soft_time_limit`: seconds; without them DEFAULT_TASK_TIMEOUT and two thirds.
    - `retry_policy`: {"max_retries": n, "on": "transient" | "any"}; without `max_retries`,
      MAX_RETRY_ATTEMPTS; without a policy, no retries.
    - `secrets`: (parameters) -> (parameters with the secrets masked, the secrets): the row, the
      message and the logs hold the first; the run reads the second as `ctx.secrets`, sealed
      in between (app/core/sealing.py).
    - `concurrency`: {"key": "global" | "owner" | {"$param": "/pointer"}, "limit": n, "strategy":
      "queue" | "cancel_in_progress" | "cancel_newest" | "keep_newest_queued"}: at most `limit`
      of its tasks of one key run at once (app/core/concurrency.py); a submit may narrow it.
    - `limits`: the named rate limits each run takes a token of (app/core/rate_limits.py).
    """
    options = {
        "parameters": parameters,
        "queue": queue,
        "priority": priority,
        "time_limit": time_limit,
        "soft_time_limit": soft_time_limit,
        "retry_policy": retry_policy,
        "description": description,
        "aliases": tuple(aliases),
        "secrets": secrets,
        "concurrency": concurrency,
        "limits": tuple(limits),
    }
    if callable(name):  # the bare @task
        return _declare(name, None, options)
    return lambda function: _declare(function, name, options)


def _declare(function: Callable[..., Any], name: str | None, options: dict[str, Any]) -> Any:
    if not inspect.isfunction(function):
        raise DeclarationError(f"@task decorates a function, not {function!r}")
    where = f"{function.__module__}.{function.__qualname__}"
    type_name = name if name is not None else function.__name__
    takes_context = _takes_context(function)
    declaration = Declaration(
        name=_checked_name(type_name, where),
        module=function.__module__,
        function=function,
        schema=_schema(function, options["parameters"], takes_context, where),
        description=options["description"] or inspect.getdoc(function) or "",
        aliases=tuple(_checked_name(alias, where) for alias in options["aliases"]),
        queue=_checked_queue(options["queue"], where),
        priority=_checked_priority(options["priority"], where),
        **_limits(options["time_limit"], options["soft_time_limit"], where),
        **_retries(options["retry_policy"], where),
        secrets=options["secrets"],
        concurrency=_concurrency(options["concurrency"], where),
        limits=tuple(_checked_limit(limit, where) for limit in options["limits"]),
    )
    with _lock:
        earlier = _declared.get(declaration.name)
        if earlier is not None and (earlier.module, earlier.function.__qualname__) != (
            declaration.module,
            function.__qualname__,
        ):
            raise DeclarationError(
                f"{where}: task type {declaration.name!r} is declared twice "
                f"(also by {earlier.module}.{earlier.function.__qualname__}); names are unique"
            )
        _declared[declaration.name] = declaration
    return shared_task(name=declaration.celery_name, pass_context=takes_context)(function)


def _checked_limit(value: Any, where: str) -> str:
    if not isinstance(value, str) or not LIMIT_NAME.fullmatch(value):
        raise DeclarationError(f"{where}: limits name rate limits: {value!r} is not {LIMIT_NAME_RULE}")
    return value


def _concurrency(value: Any, where: str) -> ConcurrencySpec | None:
    if value is None:
        return None
    try:
        return concurrency.parse(dict(value) if isinstance(value, Mapping) else value)
    except InvalidInput as exc:
        raise DeclarationError(f"{where}: {exc.message}") from None


def _takes_context(function: Callable[..., Any]) -> bool:
    """Whether the first parameter is annotated RunContext (by the class, or by its name)."""
    parameters = list(inspect.signature(function).parameters.values())
    if not parameters or parameters[0].annotation is inspect.Parameter.empty:
        return False
    annotation = parameters[0].annotation
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(function).get(parameters[0].name, annotation)
        except Exception:  # noqa: BLE001 - hints.schema_for reports an unreadable annotation
            return annotation.rsplit(".", 1)[-1] == "RunContext"
    return annotation is RunContext


def _schema(function: Callable[..., Any], given: Any, takes_context: bool, where: str) -> Schema:
    if given is None:
        return schema_for(function, skip_first=takes_context)
    if isinstance(given, type) and issubclass(given, Schema):
        return given()
    if isinstance(given, Schema):
        return given
    raise DeclarationError(f"{where}: parameters must be a marshmallow Schema, not {given!r}")


def _checked_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DeclarationError(f"{where}: task type name {name!r} must be {NAME_RULE}")
    if name in RESERVED:
        raise DeclarationError(f"{where}: {name!r} is the name of a task of Tasker's own; choose another")
    return name


def _checked_queue(queue: Any, where: str) -> str:
    if not isinstance(queue, str) or not QUEUE.fullmatch(queue):
        raise DeclarationError(f"{where}: queue {queue!r} must be 1 to 64 of A-Z, a-z, 0-9, _, . and -")
    return queue


def _checked_priority(priority: Any, where: str) -> int:
    if isinstance(priority, str) and priority in PRIORITIES:
        return PRIORITIES[priority]
    if isinstance(priority, int) and not isinstance(priority, bool) and 0 <= priority <= MAX_PRIORITY:
        return priority
    raise DeclarationError(f"{where}: priority {priority!r} must be low, normal, high or 0 to {MAX_PRIORITY}")


def _limits(hard: Any, soft: Any, where: str) -> dict[str, int | None]:
    for label, value in (("time_limit", hard), ("soft_time_limit", soft)):
        valid = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_TIME_LIMIT
        if value is not None and not valid:
            raise DeclarationError(f"{where}: {label} must be whole seconds, 1 to {MAX_TIME_LIMIT}")
    if soft is not None and (hard is None or soft >= hard):
        raise DeclarationError(f"{where}: soft_time_limit needs a time_limit, and must be below it")
    if hard is not None and soft is None:
        soft = max(1, hard * 2 // 3)
    return {"time_limit": hard, "soft_time_limit": soft}


def _retries(policy: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    if policy is None:
        return {"max_retries": 0, "retry_on": "transient"}
    if not isinstance(policy, Mapping) or set(policy) - {"max_retries", "on"}:
        raise DeclarationError(f"{where}: retry_policy takes max_retries and on, nothing else")
    retries = policy.get("max_retries")
    if retries is not None and (not isinstance(retries, int) or isinstance(retries, bool) or retries < 0):
        raise DeclarationError(f"{where}: retry_policy's max_retries must be a whole number, 0 or more")
    on = policy.get("on", "transient")
    if on not in RETRY_ON:
        raise DeclarationError(f"{where}: retry_policy's on must be one of {', '.join(RETRY_ON)}")
    return {"max_retries": retries, "retry_on": on}
