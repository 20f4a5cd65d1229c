"""The Celery tasks: thin wrappers over plain functions that hold the logic."""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable
from typing import Any

from celery import shared_task

from app.core.recovery import Thresholds
from app.tasks import http, openai_client, weather_client
from app.tasks.errors import TaskFailed, TransientError
from app.tasks.registry import REGISTRY

MAX_RETRY_DELAY_SECONDS = 60.0


def add(a: int | float, b: int | float) -> int | float:
    """a + b; an int when both are ints (the parameters are bounded, so it never overflows)."""
    return a + b


def longest_run(text: str) -> int:
    """Length of the longest run of one repeated character; 0 for ''."""
    return max((sum(1 for _ in run) for _, run in itertools.groupby(text)), default=0)


def process_records(
    duration_seconds: float,
    record_count: int,
    fail_at_percent: int | None,
    on_step: Callable[[int, int], None],
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Simulated batch work: steps of at most a second; on_step(percent, processed) after each one."""
    steps = max(20, math.ceil(duration_seconds))
    started = time.monotonic()
    processed = 0
    for step in range(steps + 1):
        percent = step * 100 // steps
        if fail_at_percent is not None and percent >= fail_at_percent:
            raise TaskFailed(f"Failed on purpose at {percent}% (fail_at_percent={fail_at_percent}).")
        if step == steps:
            break
        sleep(duration_seconds / steps)  # the work of one step
        processed = record_count * (step + 1) // steps
        on_step((step + 1) * 100 // steps, processed)
    return {
        "records_processed": processed,
        "steps": steps,
        "duration_seconds": duration_seconds,
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }


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
    upstream = http.Upstream.from_config(self.settings, "OPENAI")
    default_model = self.settings["OPENAI_MODEL"]
    try:
        return openai_client.chat_completion(
            self.http, upstream, default_model, prompt, model, max_tokens, temperature
        )
    except TransientError as exc:
        raise retry_later(self, "query_chatgpt", exc) from exc


@shared_task(bind=True, name="tasker.process_data")
def process_data(
    self, duration_seconds: float, record_count: int = 1000, fail_at_percent: int | None = None
) -> dict[str, Any]:
    def on_step(percent: int, processed: int) -> None:
        self.report_progress(percent, f"{processed} of {record_count} records")
        self.check_cancelled()

    return process_records(duration_seconds, record_count, fail_at_percent, on_step)


@shared_task(bind=True, name="tasker.weather")
def weather(self, city: str, units: str = "metric") -> dict:
    upstream = http.Upstream.from_config(self.settings, "OPENWEATHER")
    try:
        return weather_client.current_weather(self.http, upstream, city, units)
    except TransientError as exc:
        raise retry_later(self, "weather", exc) from exc


def retry_later(task: Any, name: str, exc: TransientError) -> Exception:
    """Celery's Retry after a backoff, or TaskFailed once the task type's retries are spent."""
    retries = task.request.retries
    if retries >= REGISTRY.resolve(name).max_retries:
        return TaskFailed(f"{exc} (gave up after {retries + 1} attempts)")
    delay = retry_delay(retries, task.settings["RETRY_BACKOFF_SECONDS"], exc.retry_after)
    task.mark_retrying(exc)  # before the retry message exists, so it always finds the row RETRYING
    return task.retry(exc=exc, countdown=delay, max_retries=None, throw=False)


@shared_task(bind=True, name="tasker.recovery_sweep", tracked=False)
def recovery_sweep(self) -> dict[str, int]:
    """Run by beat: publish again what a lost message or a dead worker left behind."""
    settings = self.settings
    thresholds = Thresholds(
        pending_after=settings["RECOVERY_PENDING_SECONDS"],
        orphan_after=settings["RECOVERY_STARTED_SECONDS"],
        max_deliveries=settings["TASK_MAX_DELIVERIES"],
        retry_delay=MAX_RETRY_DELAY_SECONDS,
    )
    return self.task_manager.recover(thresholds)


@shared_task(bind=True, name="tasker.publish_due", tracked=False)
def publish_due(self) -> int:
    """Run by beat: a task for each schedule that is due, then the SCHEDULED tasks whose time has come."""
    fired = self.schedule_manager.fire_due() or 0
    return fired + self.task_manager.publish_due()
