"""The Celery tasks: thin wrappers over plain functions that hold the logic."""

from __future__ import annotations

import itertools
import random
from typing import Any

from celery import shared_task

from app.tasks import openai_client, weather_client
from app.tasks.errors import TaskFailed, TransientError
from app.tasks.registry import REGISTRY

MAX_RETRY_DELAY_SECONDS = 60.0


def add(a: int | float, b: int | float) -> int | float:
    """a + b; an int when both are ints (the parameters are bounded, so it never overflows)."""
    return a + b


def longest_run(text: str) -> int:
    """Length of the longest run of one repeated character; 0 for ''."""
    return max((sum(1 for _ in run) for _, run in itertools.groupby(text)), default=0)


def retry_delay(retries: int, base: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter, never sooner than the upstream's Retry-After."""
    delay = min(MAX_RETRY_DELAY_SECONDS, base * 2**retries + random.uniform(0, base))
    if retry_after is not None:
        if retry_after > MAX_RETRY_DELAY_SECONDS:
            raise TaskFailed(
                f"Rate limited: the upstream asked to wait {retry_after:.0f} s, "
                f"longer than the {MAX_RETRY_DELAY_SECONDS:.0f} s Tasker waits."
            )
        delay = max(delay, retry_after)
    return delay


@shared_task(name="tasker.sum_two_numbers")
def sum_two_numbers(a: float, b: float) -> int | float:
    return add(a, b)


@shared_task(name="tasker.find_longest_consecutive_letters")
def find_longest_consecutive_letters(string: str) -> int:
    return longest_run(string)


@shared_task(bind=True, name="tasker.query_chatgpt")
def query_chatgpt(
    self,
    prompt: str,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    settings = openai_client.OpenAISettings.from_config(self.settings)
    try:
        return openai_client.chat_completion(self.http, settings, prompt, model, max_tokens, temperature)
    except TransientError as exc:
        raise retry_later(self, "query_chatgpt", exc) from exc


@shared_task(bind=True, name="tasker.weather")
def weather(self, city: str, units: str = "metric") -> dict:
    settings = weather_client.WeatherSettings.from_config(self.settings)
    try:
        return weather_client.current_weather(self.http, settings, city, units)
    except TransientError as exc:
        raise retry_later(self, "weather", exc) from exc


def retry_later(task: Any, name: str, exc: TransientError) -> Exception:
    """Celery's Retry after a backoff, or TaskFailed once the task type's retries are spent."""
    retries = task.request.retries
    if retries >= REGISTRY.resolve(name).max_retries:
        return TaskFailed(f"{exc} (gave up after {retries + 1} attempts)")
    delay = retry_delay(retries, task.settings["RETRY_BACKOFF_SECONDS"], exc.retry_after)
    return task.retry(exc=exc, countdown=delay, max_retries=None, throw=False)


@shared_task(bind=True, name="tasker.recovery_sweep", tracked=False)
def recovery_sweep(self) -> dict[str, int]:
    """Run by beat: publish again what a lost message or a dead worker left behind."""
    return self.task_manager.recover(self.settings["RECOVERY_PENDING_SECONDS"])
