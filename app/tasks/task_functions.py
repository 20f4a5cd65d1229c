"""The Celery tasks: thin wrappers over plain functions that hold the logic."""

from __future__ import annotations

import itertools
import logging
import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from celery import shared_task

from app.core.errors import DatabaseUnavailable, DependencyUnavailable, InvalidInput
from app.tasks import http, http_target, openai_client, weather_client
from app.tasks import parameters as p
from app.tasks.base import RunContext, TaskerTask
from app.tasks.declare import task
from app.tasks.errors import TaskFailed, TransientError

logger = logging.getLogger(__name__)


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


# The built-in task types, declared as a user's are (docs/own-task-types.md). A TransientError
# from an upstream is retried under the task's retry policy by the base class (app/tasks/base.py).


@task(
    name="sum_two_numbers",
    parameters=p.SumParameters,
    aliases=["sum"],
    description="Add two numbers: a + b (an integer when both are integers).",
)
def sum_two_numbers(a: float, b: float) -> int | float:
    return add(a, b)


@task(
    name="find_longest_consecutive_letters",
    parameters=p.LettersParameters,
    description="Length of the longest run of one repeated character (case-sensitive).",
)
def find_longest_consecutive_letters(string: str) -> int:
    return longest_run(string)


@task(
    name="query_chatgpt",
    parameters=p.ChatGPTParameters,
    aliases=["chatgpt"],
    queue="external_api",
    time_limit=270,
    soft_time_limit=240,
    retry_policy={"on": "transient"},  # MAX_RETRY_ATTEMPTS times
    description="Send a prompt to OpenAI's chat completions API; the result is the reply text.",
)
def query_chatgpt(
    ctx: RunContext,
    prompt: str,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    upstream = http.Upstream.from_config(ctx.settings, "OPENAI")
    default_model = ctx.settings["OPENAI_MODEL"]
    # The operator's ceiling bounds every request, also those that do not name a count.
    ceiling = ctx.settings["OPENAI_MAX_TOKENS"]
    max_tokens = ceiling if max_tokens is None else min(max_tokens, ceiling)
    # The prompt is the user's data: its length is logged, never its text.
    logger.info(
        "asking %s (prompt of %d characters, max_tokens %s)",
        model or default_model,
        len(prompt),
        max_tokens,
        extra={"prompt_chars": len(prompt)},
    )
    return openai_client.chat_completion(
        ctx.http, upstream, default_model, prompt, model, max_tokens, temperature
    )


@task(
    name="process_data",
    parameters=p.ProcessDataParameters,
    time_limit=3760,
    soft_time_limit=3700,
    description=(
        "A long job in steps: processes record_count records over duration_seconds, reporting "
        "progress, stopping between steps when cancelled, failing on purpose at fail_at_percent."
    ),
)
def process_data(
    ctx: RunContext, duration_seconds: float, record_count: int = 1000, fail_at_percent: int | None = None
) -> dict[str, Any]:
    def on_step(percent: int, processed: int) -> None:
        ctx.report_progress(percent, f"{processed} of {record_count} records")
        ctx.check_cancelled()

    return process_records(duration_seconds, record_count, fail_at_percent, on_step)


@task(
    name="weather",
    parameters=p.WeatherParameters,
    queue="external_api",
    time_limit=90,
    soft_time_limit=60,
    retry_policy={"on": "transient"},  # MAX_RETRY_ATTEMPTS times
    description="Current weather in a city from OpenWeatherMap (units: metric, imperial or kelvin).",
)
def weather(ctx: RunContext, city: str, units: str = "metric") -> dict:
    upstream = http.Upstream.from_config(ctx.settings, "OPENWEATHER")
    return weather_client.current_weather(ctx.http, upstream, city, units)


@task(
    name="http_request",
    parameters=p.HttpRequestParameters,
    queue="external_api",
    time_limit=330,
    soft_time_limit=320,
    retry_policy={"on": "transient"},  # MAX_RETRY_ATTEMPTS times
    secrets=http_target.split_secrets,
    description=(
        "Call your own HTTP endpoint (a host HTTP_TASK_ALLOWED_HOSTS names), signed with Standard "
        "Webhooks headers: 2xx completes with the answer; 408, 429, 5xx and timeouts are retried; "
        "any other answer fails; redirects are not followed."
    ),
)
def http_request(ctx: RunContext, **parameters: Any) -> dict[str, Any]:
    services = ctx.task.services
    refused = services.http_targets.refusal(parameters["url"])  # the settings now, not at submit
    if refused is not None:
        raise TaskFailed(f"refused: {refused}")
    signing = services.deliveries.secrets.signing(ctx.owner)
    secret_headers = ctx.secrets.get("headers", {})
    return http_target.call(services.http_targets.session, ctx.task_id, parameters, secret_headers, signing)


@task(
    name="start_workflow",
    parameters=p.StartWorkflowParameters,
    retry_policy={"on": "transient"},  # MAX_RETRY_ATTEMPTS times
    description=(
        "Start a stored workflow template with an input (a schedule's way to start workflows): the "
        "workflow's id. Retries and requeues start it once (the task's id is its Idempotency-Key)."
    ),
)
def start_workflow(ctx: RunContext, template: str, input: dict) -> dict:
    workflows = ctx.task.services.workflows
    body = {"template": template, "input": input}
    try:
        workflow, _ = workflows.submit(body, ctx.owner, f"start_workflow:{ctx.task_id}")
    except InvalidInput as exc:
        raise TaskFailed(exc.message) from None
    except DependencyUnavailable as exc:
        raise TransientError(exc.message) from None
    return {"workflow_id": workflow["id"], "template": template}


# Housekeeping as tasks: beat runs these jobs in its own process (app/core/beat/housekeeping.py), so
# nothing sends them on a schedule. They stay for a run by hand (`celery -A celery_worker.celery
# call tasker.recovery_sweep`) and for a beat of an earlier version during an upgrade. No row of
# their own, and no task events (they would fill Flower's list).


@shared_task(bind=True, name="tasker.recovery_sweep", tracked=False, send_events=False)
def recovery_sweep(self: TaskerTask) -> dict[str, int]:
    """Publish again what a lost message or a dead worker left behind."""
    return self.services.recovery.sweep()


@shared_task(bind=True, name="tasker.publish_due", tracked=False, send_events=False)
def publish_due(self: TaskerTask) -> dict[str, int] | None:
    """A task for each schedule that is due, then the SCHEDULED tasks whose time has come."""
    return self.services.scheduler.run_due()


@shared_task(
    bind=True,
    name="tasker.deliver_webhook",
    tracked=False,
    send_events=False,
    soft_time_limit=100,  # a backstop: one attempt is bounded by WEBHOOK_TIMEOUT_SECONDS (at most 60)
    time_limit=120,
)
def deliver_webhook(self: TaskerTask, delivery_id: str) -> str:
    """One attempt at a webhook delivery (app/core/webhooks/deliveries.py); the row says what became of it."""
    try:
        return str(self.services.deliveries.deliver(uuid.UUID(delivery_id)))
    except DatabaseUnavailable as exc:
        # Not claimed, or the outcome not written: the recovery sweep finds the row either way;
        # trying again soon is quicker.
        logger.warning("delivery %s: database unavailable; retrying in 5 s", delivery_id)
        raise self.retry(exc=exc, countdown=5, max_retries=None) from None
