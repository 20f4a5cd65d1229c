"""The catalog of task types: names, aliases, parameter schemas, queues, limits, retries."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError

from app.core.errors import InvalidInput, UnknownTaskType, describe_messages
from app.core.retries import RetryPolicy
from app.tasks import parameters as p


@dataclass(frozen=True)
class TaskType:
    name: str
    celery_name: str
    schema: Schema
    description: str
    aliases: tuple[str, ...] = ()
    queue: str = "default"
    soft_time_limit: int = 30
    time_limit: int = 45
    max_retries: int = 0  # retries after a failure `retry_on` covers
    retry_on: str = "transient"  # "transient" (upstream 429/5xx, timeouts) or "any" failure

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


def retry_policy_of(row_policy: Mapping[str, Any] | None, task_type: TaskType | None) -> RetryPolicy:
    """The policy a task runs under: its own (given at submit), else its type's, else none."""
    if row_policy:
        return RetryPolicy.stored(row_policy)
    return task_type.retry_policy if task_type else RetryPolicy()


def default_limits(timeout: int) -> dict[str, int]:
    """Time limits from DEFAULT_TASK_TIMEOUT: the soft one (the task is told) at two thirds."""
    return {"time_limit": timeout, "soft_time_limit": max(1, timeout * 2 // 3)}


def build_registry(default_task_timeout: int = 45, max_retry_attempts: int = 3) -> Registry:
    """The task types, with the limits and retries the settings give (DEFAULT_TASK_TIMEOUT for
    the types without limits of their own, MAX_RETRY_ATTEMPTS for the types that retry)."""
    defaults = default_limits(default_task_timeout)
    return Registry(
        [
            TaskType(
                name="sum_two_numbers",
                celery_name="tasker.sum_two_numbers",
                schema=p.SumParameters(),
                description="Add two numbers: a + b (an integer when both are integers).",
                aliases=("sum",),
                **defaults,
            ),
            TaskType(
                name="find_longest_consecutive_letters",
                celery_name="tasker.find_longest_consecutive_letters",
                schema=p.LettersParameters(),
                description="Length of the longest run of one repeated character (case-sensitive).",
                **defaults,
            ),
            TaskType(
                name="query_chatgpt",
                celery_name="tasker.query_chatgpt",
                schema=p.ChatGPTParameters(),
                description="Send a prompt to OpenAI's chat completions API; the result is the reply text.",
                aliases=("chatgpt",),
                queue="external_api",
                soft_time_limit=240,
                time_limit=270,
                max_retries=max_retry_attempts,
            ),
            TaskType(
                name="process_data",
                celery_name="tasker.process_data",
                schema=p.ProcessDataParameters(),
                description=(
                    "A long job in steps: processes record_count records over duration_seconds, reporting "
                    "progress, stopping between steps when cancelled, failing on purpose at fail_at_percent."
                ),
                soft_time_limit=3700,
                time_limit=3760,
            ),
            TaskType(
                name="weather",
                celery_name="tasker.weather",
                schema=p.WeatherParameters(),
                description=(
                    "Current weather in a city from OpenWeatherMap (units: metric, imperial or kelvin)."
                ),
                queue="external_api",
                soft_time_limit=60,
                time_limit=90,
                max_retries=max_retry_attempts,
            ),
        ]
    )
