"""The catalogue of task types, built from their declarations (app/tasks/declare.py): names,
aliases, parameter schemas, queues, limits, retries."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError

from app.core.concurrency import ConcurrencySpec
from app.core.errors import InvalidInput, UnknownTaskType, describe_messages
from app.core.ports import DEFAULT_PRIORITY
from app.core.rate_limits import NAME as LIMIT_NAME
from app.core.rate_limits import NAME_RULE as LIMIT_NAME_RULE
from app.core.retries import RetryPolicy, retry_policy_of
from app.tasks.declare import Declaration, declared
from app.tasks.hints import DeclarationError

BUILT_IN = "app.tasks.task_functions"


@dataclass(frozen=True)
class TaskType:
    name: str
    schema: Schema
    description: str
    aliases: tuple[str, ...] = ()
    queue: str = "default"
    soft_time_limit: int = 30
    time_limit: int = 45
    max_retries: int = 0  # retries after a failure `retry_on` covers
    retry_on: str = "transient"  # "transient" (TransientError: upstream 429/5xx, timeouts) or "any"
    priority: int = DEFAULT_PRIORITY  # when a submit names none
    module: str = "app.tasks.task_functions"  # where it is declared
    # (parameters) -> (parameters with its secrets masked, the secrets), sealed at submit; None: none
    secrets: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]] | None = None
    concurrency: ConcurrencySpec | None = None  # its tasks' concurrency key (app/core/concurrency.py)
    limits: tuple[str, ...] = ()  # the named rate limits its runs consume (app/core/rate_limits.py)

    @property
    def celery_name(self) -> str:
        """The Celery task's name, made from the type's own."""
        return f"tasker.{self.name}"

    @property
    def retry_policy(self) -> RetryPolicy:
        """The policy a task of this type gets when its submit names none."""
        return RetryPolicy(self.max_retries, self.retry_on)

    def max_starts(self, max_deliveries: int, policy: Mapping[str, Any] | None = None) -> int:
        """How often a task may be started: its retries (its own `policy`, else the type's), plus
        `max_deliveries` for crashes."""
        return retry_policy_of(policy, self).max_retries + max_deliveries

    def validate(self, parameters: Any, field: str = "parameters") -> dict[str, Any]:
        """The cleaned parameters, or InvalidInput naming each field (under `field`) and rule."""
        if not isinstance(parameters, dict):
            raise InvalidInput(f"{field} must be a JSON object.", {field: ["Must be a JSON object."]})
        try:
            return self.schema.load(parameters)
        except ValidationError as exc:
            problems = " ".join(describe_messages(exc.messages))
            raise InvalidInput(
                f"Invalid {field} for {self.name}: {problems}", {field: exc.messages}
            ) from None


class Registry:
    def __init__(self, task_types: list[TaskType]):
        self._types = list(task_types)
        self._by_name = {n: t for t in self._types for n in (t.name, *t.aliases)}
        self._by_celery_name = {t.celery_name: t for t in self._types}

    def __iter__(self) -> Iterator[TaskType]:
        return iter(self._types)

    @property
    def queues(self) -> list[str]:
        return sorted({t.queue for t in self._types})

    def for_celery_task(self, celery_name: str) -> TaskType | None:
        return self._by_celery_name.get(celery_name)

    def with_limits(self, pairs: Iterable[str]) -> Registry:
        """The registry with the named rate limits TASK_LIMITS adds ("type=limit" each) to the
        types' own; DeclarationError for a malformed pair or an unknown type."""
        added: dict[str, list[str]] = {}
        for pair in pairs:
            type_name, _, limit = pair.partition("=")
            if type_name not in self._by_name or not LIMIT_NAME.fullmatch(limit):
                raise DeclarationError(
                    f"TASK_LIMITS: {pair!r} is not type=limit with a task type's name and a limit "
                    f"of {LIMIT_NAME_RULE}"
                )
            added.setdefault(self._by_name[type_name].name, []).append(limit)
        return Registry(
            [
                dataclasses.replace(t, limits=tuple(dict.fromkeys([*t.limits, *added.get(t.name, [])])))
                for t in self._types
            ]
        )

    def resolve(self, name: Any, field: str = "name") -> TaskType:
        """The task type called `name` (or an alias); UnknownTaskType names `field` and the valid names."""
        found = self._by_name.get(name) if isinstance(name, str) else None
        if found is None:
            valid = sorted(self._by_name)
            raise UnknownTaskType(
                f"Unknown {field} {str(name)[:100]!r}. Valid task names: {', '.join(valid)}.",
                {field: ["Unknown task name."], "valid_task_names": valid},
            )
        return found


def default_limits(timeout: int) -> dict[str, int]:
    """Time limits from DEFAULT_TASK_TIMEOUT: the soft one (the task is told) at two thirds."""
    return {"time_limit": timeout, "soft_time_limit": max(1, timeout * 2 // 3)}


def task_type_of(declaration: Declaration, default_task_timeout: int, max_retry_attempts: int) -> TaskType:
    """A declared type with what its declaration leaves to the settings filled in (DEFAULT_TASK_TIMEOUT
    for its limits, MAX_RETRY_ATTEMPTS for a retry policy that names no count)."""
    limits = default_limits(default_task_timeout)
    if declaration.time_limit is not None:
        limits = {"time_limit": declaration.time_limit, "soft_time_limit": declaration.soft_time_limit}
    retries = declaration.max_retries
    return TaskType(
        name=declaration.name,
        schema=declaration.schema,
        description=declaration.description,
        aliases=declaration.aliases,
        queue=declaration.queue,
        max_retries=max_retry_attempts if retries is None else retries,
        retry_on=declaration.retry_on,
        priority=declaration.priority,
        module=declaration.module,
        secrets=declaration.secrets,
        concurrency=declaration.concurrency,
        limits=declaration.limits,
        **limits,
    )


def build_registry(
    declarations: list[Declaration] | None = None, default_task_timeout: int = 45, max_retry_attempts: int = 3
) -> Registry:
    """The catalogue from `declarations` (default: the built-in types), with the settings' limits
    and retries. Two types may not share a name or an alias."""
    if declarations is None:
        declarations = built_in()
    types = [task_type_of(d, default_task_timeout, max_retry_attempts) for d in declarations]
    seen: dict[str, TaskType] = {}
    for task_type in types:
        for name in (task_type.name, *task_type.aliases):
            other = seen.setdefault(name, task_type)
            if other is not task_type:
                raise DeclarationError(
                    f"{task_type.module}: {name!r} names two task types ({other.name} of {other.module} "
                    f"and {task_type.name}); names and aliases are unique"
                )
    return Registry(types)


def built_in() -> list[Declaration]:
    """The declarations of Tasker's own task types."""
    importlib.import_module(BUILT_IN)
    return [d for d in declared() if d.module == BUILT_IN]
