"""The base class of every Tasker task (claim, then record the outcome) and the per-run context.

`TaskerTask` only claims the row before the function runs and records how it ended. What a
function needs for one run (progress, the cancellation check, an HTTP session, a retry) is
handed to it as a `RunContext` by tasks declared with `pass_context=True`, the way
procrastinate hands a job its JobContext: nothing of one run lives on the task object, which
Celery shares between the threads of a `-P threads` worker.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from celery import Celery, Task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded

from app.core import logs, metrics, redact
from app.core.errors import DatabaseUnavailable
from app.core.retries import RetryPolicy, retry_policy_of
from app.core.sealing import SealError
from app.tasks import handles
from app.tasks.errors import TaskCancelled, TaskFailed, TransientError
from app.tasks.services import Tasker

logger = logging.getLogger(__name__)
CLAIM_RETRY_SECONDS = 5
PROGRESS_INTERVAL = 0.25  # seconds between two progress writes of one task
MAX_RETRY_DELAY_SECONDS = 60.0
# What a retry policy of "any" does not retry: a cancel, and Celery's own control flow.
NOT_RETRIED = (TaskCancelled, Retry, Ignore, Reject, DatabaseUnavailable)


def retry_delay(retries: int, base: float, retry_after: float | None = None) -> float:
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


CANCELLED_BY_CLIENT = "Cancelled while running, at the client's request."


@dataclass
class RunState:
    """What Tasker keeps of one run, as one record on Celery's request (`tasker_run`)."""

    log: Any = None  # the token of the run's log fields; after_return unbinds them
    started: float | None = None  # time.monotonic() at the claim; None once the outcome is observed
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    webhook: bool | None = None  # whether the task has a webhook (its claim said)
    owner: str | None = None  # whose task it is (its claim said)
    step: str | None = None  # `<workflow_id>/<step key>` for a workflow's step (its claim said)


class TaskerCelery(Celery):
    """Celery, holding the services its tasks use (app/tasks/services.py).

    They are bound once, as soon as they are built: they cannot be given to the constructor,
    since the broker they send through wraps this very app (app/wiring.py)."""

    services: Tasker | None = None

    def bind(self, services: Tasker) -> None:
        self.services = services

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        """A Tasker task sent with no task id goes through the submit path (a row, then the
        message) and a TaskHandle comes back; anything else is Celery's send_task."""
        services = self.services
        task_type = handles.task_type_for(services.registry, name) if services else None
        if options.get("task_id") is not None or task_type is None or services is None:
            return super().send_task(name, args, kwargs, **options)
        function = self.tasks[task_type.celery_name].run
        return handles.submit_call(services.tasks, task_type, function, args, kwargs, options)


_sessions = threading.local()


def http_session() -> requests.Session:
    """One HTTP session (and connection pool) per thread of each worker process."""
    if getattr(_sessions, "pid", None) != os.getpid():
        _sessions.session, _sessions.pid = requests.Session(), os.getpid()
    return _sessions.session


@dataclass
class RunContext:
    """What a task function gets for one run."""

    task: TaskerTask
    task_id: uuid.UUID
    _progress_at: float = 0.0
    _unsaved: tuple[int, str | None] | None = field(default=None, repr=False)

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.task.services.settings

    @property
    def http(self) -> requests.Session:
        return http_session()

    @property
    def owner(self) -> str:
        """Whose task it is: the owner of the key that submitted it ("default" in open mode)."""
        return self.task.run_state.owner or "default"

    @property
    def secrets(self) -> dict[str, Any]:
        """The secrets its type keeps out of its parameters (app/core/sealing.py), opened for this
        run and masked in its log lines; {} when it has none."""
        sealed = getattr(self.task.request, "tasker_sealed", None)
        if not sealed:
            return {}
        try:
            opened = self.task.services.sealer.open(sealed)
        except SealError as exc:
            raise TaskFailed(str(exc)) from None
        redact.hide(_strings(opened))
        return opened

    @property
    def idempotency_token(self) -> str:
        """A key to pass to the services the task calls, the same for every attempt of this work:
        `<workflow_id>/<step key>` for a workflow's step (kept across retries, the sweep's requeue
        and a resume), else the task's id."""
        return self.task.run_state.step or str(self.task_id)

    @property
    def retries(self) -> int:
        """How many times this run was retried after a failure."""
        return self.task.request.retries

    @property
    def max_retries(self) -> int:
        """How many retries its retry policy allows (its own, else its task type's)."""
        return self.task.run_state.policy.max_retries

    def report_progress(self, percent: int, message: str | None = None) -> None:
        """Record progress (0-100): at most every PROGRESS_INTERVAL seconds, and where the task ends."""
        self._unsaved = (max(0, min(100, percent)), (message or "")[:200] or None)
        if percent >= 100 or time.monotonic() - self._progress_at >= PROGRESS_INTERVAL:
            self.save_progress()

    def save_progress(self) -> None:
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is not None:
            self._progress_at = time.monotonic()
            self.task.services.callbacks.report_progress(self.task_id, *unsaved)

    def check_cancelled(self) -> None:
        """Call between steps: raises TaskCancelled once the task's cancellation was requested."""
        reason = self.task.services.callbacks.cancel_requested(self.task_id)
        if reason is not None:
            raise TaskCancelled(f"Cancelled while running: {reason}." if reason else CANCELLED_BY_CLIENT)

    def retry_in(self, exc: Exception, countdown: float) -> Exception:
        """RETRYING with the reason, then Celery's Retry; raise what it returns."""
        return self.task.retry_in(self.task_id, exc, countdown)


class TaskerTask(Task):
    throws = (TaskFailed, TaskCancelled)  # expected endings: logged without a traceback
    tracked = True  # False for housekeeping tasks, which have no row
    pass_context = False  # True: the function's first argument is its RunContext
    # No argument check against the function's signature when a message is sent: Tasker's come
    # from the registry's validated parameters, and a RunContext is never in a message.
    typing = False

    @property
    def services(self) -> Tasker:
        return self.app.services  # type: ignore[attr-defined]

    @property
    def name_for_metrics(self) -> str:
        """The task type's name (a bounded label): the registry's, else the Celery name."""
        task_type = self.services.registry.for_celery_task(self.name)
        return task_type.name if task_type else self.name

    @property
    def run_state(self) -> RunState:
        """This run's record on Celery's request (a blank one before the claim)."""
        return getattr(self.request, "tasker_run", None) or RunState()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        request = self.request
        if not self.tracked:  # no row: its lines carry only the request id, if any
            request.tasker_run = RunState(log=logs.start(request_id=getattr(request, "request_id", None)))
            return self.run(*args, **kwargs)
        # Every line of this run carries the task's fields, and the id of the request that
        # submitted it (from the message's headers); after_return unbinds them.
        state = request.tasker_run = RunState(
            log=logs.start(
                request_id=getattr(request, "request_id", None),
                task_id=request.id,
                task_type=self.name_for_metrics,
                queue=(request.delivery_info or {}).get("routing_key"),
            )
        )
        task_id = _task_uuid(request.id)
        if task_id is not None and self._paced(task_id):
            raise Ignore()  # its turn under a rate limit is later: beat publishes it then
        claimed = self._claim(task_id) if task_id is not None else None
        if claimed is None:
            if task_id is None or not self._held(task_id):
                self._explain_unclaimed(request.id, task_id)
            raise Ignore()
        self._started(state, claimed)
        logger.info("task %s started (attempt %s)", task_id, claimed.attempts)
        try:
            if not self.pass_context:
                return self.run(*args, **kwargs)
            context = RunContext(self, task_id)
            try:
                with redact.run_scope():  # the secrets it opens are masked in its log lines
                    return self.run(context, *args, **kwargs)
            finally:
                context.save_progress()  # where it stopped, whatever the throttle held back
        except NOT_RETRIED:
            raise
        except TransientError as exc:  # retried under any policy, while its retries last
            raise self._transient(task_id, exc, state.policy) from exc
        except Exception as exc:
            if not state.policy.retries_any_failure(request.retries):
                raise
            countdown = retry_delay(request.retries, self.services.settings["RETRY_BACKOFF_SECONDS"])
            raise self.retry_in(task_id, exc, countdown) from exc

    def _transient(self, task_id: uuid.UUID, exc: TransientError, policy: RetryPolicy) -> Exception:
        """Celery's Retry after a backoff (never sooner than the upstream's Retry-After), or
        TaskFailed once the policy's retries are spent."""
        retries = self.request.retries
        if retries >= policy.max_retries:
            return TaskFailed(f"{exc} (gave up after {retries + 1} attempts)")
        # RETRYING is written before the retry message exists, so the retry always finds it.
        delay = retry_delay(retries, self.services.settings["RETRY_BACKOFF_SECONDS"], exc.retry_after)
        return self.retry_in(task_id, exc, delay)

    def _started(self, state: RunState, claimed: Any) -> None:
        """The claimed run's record: when it started, its retry policy, whether it has a webhook."""
        logs.bind(attempt=claimed.attempts)
        state.started = time.monotonic()
        state.policy = retry_policy_of(
            claimed.retry_policy, self.services.registry.for_celery_task(self.name)
        )
        # The outcome writes more with it, in one transaction: a webhook's delivery, a workflow's
        # next steps.
        state.webhook = bool(
            claimed.has_webhook or claimed.workflow_id is not None or claimed.concurrency_key is not None
        )
        state.owner = claimed.owner
        state.step = None if claimed.workflow_id is None else f"{claimed.workflow_id}/{claimed.step}"
        if claimed.attempts == 1:  # the wait for a worker, from creation (or the due time)
            waited = (claimed.started_at - (claimed.run_at or claimed.created_at)).total_seconds()
            metrics.TASK_WAIT_SECONDS.labels(claimed.name, claimed.queue).observe(max(0.0, waited))

    def retry_in(self, task_id: uuid.UUID, exc: Exception, countdown: float) -> Exception:
        """RETRYING with the reason, then Celery's Retry (raise what this returns) to run the task
        again after `countdown` seconds."""
        try:
            retrying = self.services.callbacks.record_retry(task_id, describe_failure(exc))
        except DatabaseUnavailable as db_exc:
            retrying = False
            logger.warning("task %s: could not record the retry: %s", task_id, db_exc.details)
        if retrying:
            metrics.TASK_RETRIES.labels(self.name_for_metrics).inc()
        self.observe_outcome("RETRYING", countdown=countdown)
        return self.retry(exc=exc, countdown=countdown, max_retries=None, throw=False)

    def _paced(self, task_id: uuid.UUID) -> bool:
        """Whether its type's rate limits put its run later: then it waits, WAITING, with no
        message (app/core/rate_limits.py)."""
        task_type = self.services.registry.for_celery_task(self.name)
        if task_type is None or not task_type.limits:
            return False
        try:
            until = self.services.rate_limits.take(task_id, task_type.limits)
        except DatabaseUnavailable:
            return False  # the claim finds the database away too, and retries
        if until is not None:
            logger.info("task %s waits for its turn under a rate limit, until %s", task_id, until.isoformat())
        return until is not None

    def _held(self, task_id: uuid.UUID) -> bool:
        """Whether its queue is paused: then it waits, WAITING, until the queue is resumed (its
        message is done with; the resume publishes it again)."""
        try:
            queue = self.services.pauses.hold(task_id)
        except DatabaseUnavailable as exc:  # still PENDING: the recovery sweep publishes it again
            logger.warning("task %s: could not be held for a paused queue: %s", task_id, exc.details)
            return True
        if queue is not None:
            logger.info("task %s held: its queue %s is paused", task_id, queue)
        return queue is not None

    def _explain_unclaimed(self, message_id: str, task_id: uuid.UUID | None) -> None:
        """Why a message is not run: a duplicate (its row is running, finished or not due) at INFO;
        a message no submit made (no row: an old producer, a bare send_task) refused at WARNING."""
        status = self.services.callbacks.status_of(task_id) if task_id is not None else None
        if status is not None:
            logger.info("task %s is %s; this message does not run it again", task_id, status)
            return
        logger.warning(
            "message %s for %s refused: no task row has that id, so nothing would record its outcome. "
            "Submit through the API (POST /api/v1/tasks), or from Python with the task's .delay() "
            "or send_task() without a task_id (docs/tutorial.md: From Python)",
            message_id,
            self.name,
        )

    def observe_outcome(self, status: str, **fields: Any) -> None:
        """The run's time (claim to outcome) in tasker_task_run_seconds, and one line saying how it ended."""
        state = self.run_state
        started, state.started = state.started, None
        if started is None:
            return  # not claimed: nothing ran
        seconds = time.monotonic() - started
        metrics.TASK_RUN_SECONDS.labels(self.name_for_metrics).observe(seconds)
        duration_ms = round(seconds * 1000, 2)
        extra = {"status": status, "duration_ms": duration_ms, **fields}
        logger.info("task %s %s in %.2f ms", self.request.id, status, duration_ms, extra=extra)

    def after_return(self, *args: Any, **kwargs: Any) -> None:
        state = self.run_state
        token, state.log = state.log, None
        if token is not None:
            logs.unbind(token)

    def _claim(self, task_id: uuid.UUID) -> Any:
        task_type = self.services.registry.for_celery_task(self.name)
        deliveries = self.services.settings["TASK_MAX_DELIVERIES"]

        def max_starts(row: Any) -> int:  # its retries (its own policy, else its type's) and crashes
            return retry_policy_of(row.retry_policy, task_type).max_retries + deliveries

        try:
            return self.services.callbacks.claim_within(task_id, max_starts, self.request.hostname)
        except DatabaseUnavailable as exc:
            logger.warning("task %s: database unavailable at claim; retrying", task_id)
            raise self.retry(exc=exc, countdown=CLAIM_RETRY_SECONDS, max_retries=None) from None

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        if self.tracked:
            self.observe_outcome("COMPLETED")
            self._record(self.services.callbacks.record_success, task_id, retval)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        if not self.tracked or isinstance(exc, DatabaseUnavailable):
            return  # the claim could not run; the message is retried, nothing to record
        callbacks = self.services.callbacks
        if isinstance(exc, TaskCancelled):
            self.observe_outcome("CANCELLED")
            self._record(callbacks.record_cancelled, task_id, str(exc))
            return
        self.observe_outcome("FAILED", error_type=type(exc).__name__)
        soft_limit = self.request.timelimit[1] if self.request.timelimit else None
        self._record(callbacks.record_failure, task_id, describe_failure(exc, soft_limit))

    def _record(self, handler: Any, task_id: str, value: Any) -> None:
        try:
            handler(_task_uuid(task_id), value, self.run_state.webhook)
        except DatabaseUnavailable as exc:
            # The outcome is not written: run the task again once the database is back.
            logger.warning("task %s: database unavailable, requeueing: %s", task_id, exc.details)
            raise Reject(exc, requeue=True) from None


def describe_failure(exc: BaseException, soft_time_limit: float | None = None) -> str:
    """The error a client sees: our own messages as they are, others with their type, no traceback."""
    if isinstance(exc, SoftTimeLimitExceeded):
        limit = f" of {soft_time_limit:g} s" if soft_time_limit else ""
        return f"The task exceeded its time limit{limit} and was stopped."
    if isinstance(exc, TaskFailed | TransientError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _strings(value: Any) -> list[str]:
    """Every string inside `value` (dicts and lists too)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _task_uuid(task_id: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        return None
