"""The use cases behind the HTTP API: submit, read, wait for, list, cancel and retry tasks."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.core import concurrency, metrics, tags
from app.core.batching import Batcher, Item
from app.core.broker import Broker, Message, headers
from app.core.endings import Endings
from app.core.errors import (
    BrokerUnavailable,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    TaskerError,
    TaskNotFound,
)
from app.core.live.changes import LIST_STREAMS, TASK_STREAMS
from app.core.pauses import Pauses
from app.core.ports import MAX_SCHEDULE_DAYS, Registry, TaskType
from app.core.quotas import QuotaExceeded, UnfinishedTasks
from app.core.resources import decode_cursor, encode_cursor, task_output, task_resource
from app.core.sealing import Sealer
from app.core.usage import UsagePolicy
from app.models import bulk as bulk_model
from app.models import concurrency as concurrency_model
from app.models import task as task_model
from app.models.task import DEFAULT_OWNER, TERMINAL, TaskStatus

IDEMPOTENCY_KEY_HOURS = 24
BULK_CHUNK = 250  # rows of one INSERT in a bulk submit
BULK_ACTION_LIMIT = 1000  # tasks one bulk retry or cancel acts on; `more` says if others match

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FieldNames:
    """What the calling API calls the task type and its parameters, for the errors it reports."""

    name: str = "name"
    parameters: str = "parameters"


@dataclass(frozen=True)
class SubmitRequest:
    """One submit, as any caller makes it (the APIs, Python's .delay(), a retry)."""

    name: Any
    parameters: Any
    owner: str = DEFAULT_OWNER
    priority: int | None = None  # None: its task type's
    idempotency_key: str | None = None
    run_at: datetime | None = None  # SCHEDULED until then
    countdown: float | None = None  # or in this many seconds
    webhook: dict[str, Any] | None = None  # {"url", "events"}: where its ending is delivered
    retry_policy: dict[str, Any] | None = None  # {"max_retries", "on"}: replaces its type's
    timeout_seconds: int | None = None  # its hard time limit, at most its type's; None: its type's
    tags: list[str] | None = None  # up to 10 "key:value" strings
    sealed: str | None = None  # a retry's: the secrets its parameters show masked, sealed already
    retry_of: uuid.UUID | None = None
    concurrency: Any = None  # {"key", "limit", "strategy"}: narrows its type's (app/core/concurrency.py)
    keyed: tuple[str, int] | None = None  # a retry's: the key and limit its first task ran under
    fields: FieldNames = FieldNames()  # what the calling API names the type and its parameters


@dataclass(frozen=True)
class Submission:
    id: uuid.UUID
    created: bool  # False when an Idempotency-Key matched an earlier submission
    earlier: Any = None  # that earlier row, as found
    written: dict[str, Any] | None = None  # or the values just written, with created_at

    @classmethod
    def of(cls, values: dict[str, Any], created_at: Any) -> Submission:
        return cls(values["id"], True, written=values | {"created_at": created_at})

    def resource(self) -> dict[str, Any]:
        """The v1 task resource, from the values written (no read-back); built only when asked for,
        so a submit that answers with the id alone (/run-task) pays nothing for it."""
        return task_resource(self.earlier if self.written is None else task_model.new_row(self.written))


@dataclass(frozen=True)
class _Prepared:
    """A submit checked: its type, the row to write, when it is due, its key's strategy."""

    task_type: TaskType
    values: dict[str, Any]
    due_at: datetime | None
    strategy: str | None  # None: no concurrency key

    @property
    def held(self) -> bool:
        """Its queue is paused: written WAITING, no message (app/core/pauses.py)."""
        return self.values.get("paused_queue") is not None

    @property
    def plain(self) -> bool:
        """Published at once, with no key: what a group commit writes."""
        return self.due_at is None and self.strategy is None and not self.held


@dataclass
class _Keyed:
    """What a keyed submit's transaction did, for after its commit."""

    admitted: list[Message] = dataclasses.field(default_factory=list)  # to publish
    endings: list[Any] = dataclasses.field(default_factory=list)  # tasks its strategy cancelled
    stopping: list[uuid.UUID] = dataclasses.field(default_factory=list)  # running ones asked to stop

    def reset(self) -> None:
        self.admitted, self.endings, self.stopping = [], [], []


@dataclass(frozen=True)
class NewTask:
    """A row about to be written, with what its message needs: what a submit hands the batch writer."""

    task_type: TaskType
    values: dict[str, Any]  # the row's columns
    headers: dict[str, Any] | None = None  # the message's, taken on the request's own thread

    @property
    def id(self) -> uuid.UUID:
        return self.values["id"]

    def message(self) -> Message:
        values = self.values
        return Message(
            self.task_type, self.id, values["parameters"], values["priority"], values.get("timeout_seconds"),
            self.headers, values.get("sealed"),
        )  # fmt: skip


class TaskManager:
    """Every method takes the caller's `owner`: a task of another owner is not found, exactly like an
    unknown id. `owner=None` (an admin) reaches every task."""

    def __init__(
        self,
        endings: Endings,
        registry: Registry,
        broker: Broker,
        quota: UnfinishedTasks | None = None,
        policy: UsagePolicy | None = None,
        max_retry_attempts: int = 3,
        batch_max: int = 1,
        sealer: Sealer | None = None,
        pauses: Pauses | None = None,
    ):
        self.sealer = sealer  # seals what a type's parameters must not show (app/core/sealing.py)
        self.max_retry_attempts = max_retry_attempts  # a retry_policy's max_retries when it names none
        # Group commit of plain submits (SUBMIT_BATCH_MAX rows at most); 1: each on its own.
        self.batcher = Batcher(self._write_batch, batch_max) if batch_max > 1 else None
        self.endings = endings  # cancels end a task the one way every task ends
        self.db = endings.db
        self.cache = endings.cache
        self.watch = endings.watch
        self.deliveries = endings.deliveries
        self.registry = registry
        self.broker = broker
        self.quota = quota or UnfinishedTasks(self.db, 0)
        self.policy = policy
        self.pauses = pauses  # paused queues hold their submits (app/core/pauses.py)

    def submit(self, request: SubmitRequest) -> Submission:
        """Validate, persist as PENDING, then publish with the row's id.

        With `run_at` or `countdown` the row is SCHEDULED instead, and the Scheduler publishes it
        when its time comes. With `webhook` ({"url", "events"}), its ending is delivered there.
        `retry_policy` ({"max_retries", "on"}) replaces its task type's. With a concurrency key
        it may be WAITING for a slot (app/core/concurrency.py).
        """
        return self._write(self._prepare(request), request)

    def submit_many(self, requests: Sequence[SubmitRequest]) -> list[Submission | TaskerError]:
        """Each request submitted, its outcome in its place: a Submission, or the error that
        refused it alone. The plain ones (published now, no Idempotency-Key, no concurrency key)
        are written with one multi-row INSERT and published together, as a group commit; the
        others one by one, as submit() writes them."""
        outcomes: list[Submission | TaskerError | None] = [None] * len(requests)
        batch: list[tuple[int, Item]] = []
        for index, request in enumerate(requests):
            try:
                prepared = self._prepare(request)
                if not prepared.plain or request.idempotency_key is not None:
                    outcomes[index] = self._write(prepared, request)
                    continue
                self.quota.admit(request.owner)
                batch.append((index, Item(NewTask(prepared.task_type, prepared.values, headers()))))
            except TaskerError as exc:
                outcomes[index] = exc
        for start in range(0, len(batch), BULK_CHUNK):
            self._write_batch([item for _, item in batch[start : start + BULK_CHUNK]])
        for index, item in batch:
            if item.error is not None:
                self.quota.release(item.value.values["owner"])
                error = item.error
                outcomes[index] = error if isinstance(error, TaskerError) else DatabaseUnavailable(str(error))
            else:
                outcomes[index] = Submission.of(item.value.values, item.result)
        return [outcome for outcome in outcomes if outcome is not None]

    def _prepare(self, request: SubmitRequest) -> _Prepared:
        """The request checked and made into the row to write: InvalidInput naming the field."""
        task_type = self.registry.resolve(request.name, request.fields.name)
        if request.priority is None:
            request = dataclasses.replace(request, priority=task_type.priority)
        clean = task_type.validate(request.parameters, request.fields.parameters)
        if self.policy is not None:
            self.policy.check(task_type.name, clean, request.fields.parameters)
        stored, sealed = self._sealed(task_type, clean, request.sealed)
        values = {"id": uuid.uuid4(), "name": task_type.name, "parameters": stored, "queue": task_type.queue}
        values |= {"status": TaskStatus.PENDING, "sealed": sealed} | self._columns(request, task_type)
        strategy = None  # no concurrency key
        if request.keyed is not None:  # a retry runs under its first task's key, queued
            strategy = "queue"
            values |= {"concurrency_key": request.keyed[0], "concurrency_limit": request.keyed[1]}
        elif (spec := concurrency.narrowed(task_type.concurrency, request.concurrency)) is not None:
            strategy = spec.strategy
            key = spec.key_of(task_type.name, request.owner, clean, request.fields.parameters)
            values |= {"concurrency_key": key, "concurrency_limit": spec.limit}
        due_at = self._due_at(request.run_at, request.countdown)
        if due_at is not None:
            values |= {"status": TaskStatus.SCHEDULED, "run_at": due_at}
        elif strategy is None and self.pauses is not None and task_type.queue in self.pauses.paused():
            # A task with a key is held by the worker that takes it, after its strategy has run.
            values |= {"status": TaskStatus.WAITING, "paused_queue": task_type.queue}
        if request.idempotency_key is not None:
            values |= {
                "idempotency_key": request.idempotency_key,
                "request_hash": _request_hash(task_type.name, clean, request, values),
            }
        return _Prepared(task_type, values, due_at, strategy)

    def _write(self, prepared: _Prepared, request: SubmitRequest) -> Submission:
        task_type, values, due_at = prepared.task_type, prepared.values, prepared.due_at
        if prepared.held:
            return self._hold(prepared, request)
        if due_at is None and prepared.strategy is not None:
            return self._submit_keyed(NewTask(task_type, values, headers()), prepared.strategy)
        if request.idempotency_key is not None:
            submission = self._insert_once(NewTask(task_type, values))
            if not submission.created:
                return submission
        else:
            self.quota.admit(request.owner)
            if self.batcher is not None and due_at is None:
                return self._submit_batched(self.batcher, NewTask(task_type, values, headers()))
            created_at = self.db.run_statement(lambda c: task_model.insert_values(c, values))
            submission = Submission.of(values, created_at)
        if due_at is not None:
            metrics.TASKS_SUBMITTED.labels(task_type.name).inc()
            self.watch.announce(submission.id, TaskStatus.SCHEDULED, LIST_STREAMS)
            return submission
        self._enqueue(NewTask(task_type, values, headers()), request.owner)
        return submission

    def _hold(self, prepared: _Prepared, request: SubmitRequest) -> Submission:
        """A task of a paused queue: written WAITING with no message; resuming the queue
        publishes it."""
        new = NewTask(prepared.task_type, prepared.values)
        if request.idempotency_key is not None:
            submission = self._insert_once(new)
        else:
            self.quota.admit(request.owner)
            submission = Submission.of(
                new.values, self.db.run_statement(lambda c: task_model.insert_values(c, new.values))
            )
        if submission.created:
            metrics.TASKS_SUBMITTED.labels(new.task_type.name).inc()
            self.watch.announce(new.id, TaskStatus.WAITING, LIST_STREAMS)
        return submission

    def _sealed(
        self, task_type: TaskType, clean: dict[str, Any], sealed: str | None
    ) -> tuple[dict[str, Any], Any]:
        """The parameters to store and show (a type's secrets masked), and those secrets sealed."""
        split = getattr(task_type, "secrets", None)
        if split is None or sealed is not None:
            return clean, sealed
        stored, secrets = split(clean)
        if not secrets:
            return stored, None
        if self.sealer is None:
            raise InvalidInput(f"{task_type.name} is not available here.", {"name": ["Not available."]})
        return stored, self.sealer.seal(secrets)

    def _columns(self, request: SubmitRequest, task_type: TaskType) -> dict[str, Any]:
        """The row's columns that the request sets: its webhook, time limit and tags checked, its
        retry policy filled in."""
        extra: dict[str, Any] = {
            "retry_of": request.retry_of,
            "priority": request.priority,
            "owner": request.owner,
            "timeout_seconds": _timeout(request.timeout_seconds, task_type),
            "tags": tags.checked(request.tags),
        }
        if request.webhook is not None:
            if self.deliveries is None:
                raise InvalidInput("webhook is not available here.", {"webhook": ["Not available."]})
            extra["webhook"] = self.deliveries.check(request.webhook)
        if request.retry_policy is not None:
            extra["retry_policy"] = {
                "max_retries": self.max_retry_attempts,
                "on": "any",
            } | request.retry_policy
        return extra

    def _enqueue(self, new: NewTask, owner: str) -> None:
        """The row is committed: its message now; without one, the row goes again."""
        try:
            self.broker.enqueue(new.message())
        except BrokerUnavailable:
            # Not queued: take the row back so nothing looks queued that never will run.
            self._forget(new.id)
            self.quota.release(owner)
            raise
        metrics.TASKS_SUBMITTED.labels(new.task_type.name).inc()
        self.watch.announce(new.id, TaskStatus.PENDING, LIST_STREAMS)
        logger.debug("task %s (%s) submitted", new.id, new.task_type.name)

    def _submit_keyed(self, new: NewTask, strategy: str) -> Submission:
        """A task with a concurrency key: written WAITING, its strategy applied and the key's
        waiting tasks admitted in one transaction (app/core/concurrency.py); then the admitted
        ones published, this one among them if a slot was free. Its resource is read back (its
        status may be WAITING, PENDING or CANCELLED)."""
        keyed = _Keyed()
        owner = new.values["owner"]

        def write(conn: Any, expired: datetime | None = None) -> Submission:
            keyed.reset()  # a retried transaction starts over
            return self._write_keyed(conn, new, strategy, keyed, expired)

        if "idempotency_key" in new.values:
            submission = self._insert_once(new, write)
            if not submission.created:
                return submission
        else:
            self.quota.admit(owner)
            try:
                submission = self.db.run(write)
            except BaseException:
                self.quota.release(owner)
                raise
        for ending in keyed.endings:
            self.endings.after_commit(ending)
        for task_id in keyed.stopping:
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)
            self._revoke(task_id)
        own = [m for m in keyed.admitted if m.task_id == new.id]
        if own:  # the broker must take its message, or the submit fails as any other does
            self._enqueue(NewTask(new.task_type, new.values, new.headers), owner)
        else:
            metrics.TASKS_SUBMITTED.labels(new.task_type.name).inc()
            status = (submission.earlier or task_model.new_row(submission.written or {})).status
            self.watch.announce(new.id, status, LIST_STREAMS)
        if self.endings.admissions is not None:
            self.endings.admissions.publish([m for m in keyed.admitted if m.task_id != new.id])
        return submission

    def _write_keyed(
        self, conn: Any, new: NewTask, strategy: str, keyed: _Keyed, expired: datetime | None
    ) -> Submission:
        key = new.values["concurrency_key"]
        admissions = self.endings.admissions
        assert admissions is not None
        admissions.lock(conn, key)  # first: every writer of the key takes it before any row
        if expired is not None:
            task_model.release_idempotency_key(
                conn, new.values["owner"], new.values["idempotency_key"], expired
            )
        if strategy == "queue" and conn.dialect.name == "postgresql":  # one statement: written and admitted
            row = concurrency_model.insert_admitted(conn, new.values)
            if row.status == TaskStatus.PENDING:
                keyed.admitted = [new.message()]
            written = {"status": row.status, "concurrency_slot": row.concurrency_slot}
            return Submission.of(new.values | written, row.created_at)
        task_model.insert_values(conn, new.values | {"status": TaskStatus.WAITING})
        if strategy in ("cancel_in_progress", "keep_newest_queued"):
            self._displace(conn, key, new.id, strategy, keyed)
        keyed.admitted = admissions.admit(conn, key)
        if strategy == "cancel_newest" and not any(m.task_id == new.id for m in keyed.admitted):
            limit = new.values["concurrency_limit"]
            reason = f"Cancelled: its concurrency key {key} was full (limit {limit}; cancel_newest)."
            if ending := self.endings.end_in(conn, new.id, TaskStatus.CANCELLED, reason):
                keyed.endings.append(ending)
        return Submission(new.id, True, task_model.get(conn, new.id))

    def _displace(self, conn: Any, key: str, newest: uuid.UUID, strategy: str, keyed: _Keyed) -> None:
        """cancel_in_progress: the key's other unfinished tasks cancelled (running ones asked to
        stop); keep_newest_queued: its other waiting ones."""
        reason = f"a newer task of its concurrency key {key} was submitted ({strategy})"
        for row in concurrency_model.unfinished(conn, key):
            if row.id == newest or (strategy == "keep_newest_queued" and row.status != TaskStatus.WAITING):
                continue
            if row.status == TaskStatus.STARTED:
                if task_model.request_cancel(conn, row.id, reason=reason):
                    keyed.stopping.append(row.id)
            elif ending := self.endings.end_in(conn, row.id, TaskStatus.CANCELLED, f"Cancelled: {reason}."):
                keyed.endings.append(ending)

    def _submit_batched(self, batcher: Batcher, new: NewTask) -> Submission:
        """Written and published with the submits that arrive with it (app/core/batching.py);
        answered once its own row is committed and its own message accepted. The request id for
        the message is this request's, taken with `new`: another request's thread may publish it."""
        try:
            created_at = batcher.submit(new)
        except BaseException:
            self.quota.release(new.values["owner"])
            raise
        return Submission.of(new.values, created_at)

    def _write_batch(self, items: Sequence[Item]) -> None:
        """One multi-row INSERT, then one publish of every message; each item settled with its
        own outcome (its row's created_at): a row the database refuses fails only its own request,
        and a message the broker does not accept removes its own row and fails its request with a 503."""
        metrics.SUBMIT_BATCH_SIZE.observe(len(items))
        try:
            created = self.db.run_statement(
                lambda c: task_model.insert_many(c, [i.value.values for i in items])
            )
            written = list(items)
        except DatabaseUnavailable as exc:
            for item in items:
                item.settle(error=exc)
            return
        except sa.exc.DBAPIError:  # some row is refused: find which, one statement each
            created, written = {}, []
            for item in items:
                try:
                    created |= self.db.run_statement(
                        lambda c, r=item.value.values: task_model.insert_many(c, [r])
                    )
                    written.append(item)
                except (DatabaseUnavailable, sa.exc.DBAPIError) as exc:
                    item.settle(error=exc)
        self._enqueue_batch(written, created)

    def _enqueue_batch(self, written: list[Item], created: dict[uuid.UUID, Any]) -> None:
        news: list[NewTask] = [item.value for item in written]
        outcomes = self.broker.enqueue_many([new.message() for new in news]) if news else []
        refused = [new.id for new, outcome in zip(news, outcomes, strict=True) if outcome is not None]
        if refused:
            # Not queued: take the rows back so nothing looks queued that never will run.
            try:
                self.db.run_statement(lambda c: task_model.delete_unstarted(c, refused))
            except DatabaseUnavailable as exc:
                logger.warning("could not remove %d unpublished tasks: %s", len(refused), exc.details)
        for item, new, outcome in zip(written, news, outcomes, strict=True):
            if outcome is not None:
                item.settle(error=outcome)
                continue
            metrics.TASKS_SUBMITTED.labels(new.task_type.name).inc()
            self.watch.announce(new.id, TaskStatus.PENDING, LIST_STREAMS)
            item.settle(created[new.id])

    def _insert_once(
        self, new: NewTask, write: Callable[[Any, datetime], Submission] | None = None
    ) -> Submission:
        """Insert under an Idempotency-Key (or `write(conn, expired)`, which releases the key if it
        expired before `expired`, then inserts);
        the unique index decides between concurrent duplicates. A replay's Submission is not
        `created`."""
        values = new.values
        key, owner = values["idempotency_key"], values["owner"]
        # Read the clock first, in its own transaction: one that reads and then writes can be
        # refused outright by SQLite when another writer got in between.
        expired = self.db.run(task_model.database_now) - timedelta(hours=IDEMPOTENCY_KEY_HOURS)

        def insert(conn: Any) -> Submission:
            if write is not None:
                return write(conn, expired)
            task_model.release_idempotency_key(conn, owner, key, expired)
            return Submission.of(values, task_model.insert_values(conn, values))

        try:
            self.quota.admit(owner)
        except QuotaExceeded:
            # A replay makes no new task, so the quota does not stop it from finding its first one.
            earlier = self.db.run(lambda c: task_model.by_idempotency_key(c, owner, key))
            if earlier is None or earlier.created_at < expired:
                raise
            return self._replay(earlier, key, values["request_hash"])
        try:
            return self.db.run(insert)
        except sa.exc.IntegrityError:
            self.quota.release(owner)
            earlier = self.db.run(lambda c: task_model.by_idempotency_key(c, owner, key))
        return self._replay(earlier, key, values["request_hash"])

    def _replay(self, earlier: Any, key: str, request_hash: str) -> Submission:
        """The earlier submission under this key, if it was the same request."""
        if earlier is None:  # the earlier row was removed meanwhile (its publish failed)
            raise Conflict("That Idempotency-Key is in use by a request that failed; retry shortly.")
        if earlier.request_hash != request_hash:
            raise Conflict(
                "This Idempotency-Key was already used with a different request.",
                {"idempotency_key": key, "task_id": str(earlier.id)},
            )
        return Submission(earlier.id, False, earlier)

    def _due_at(self, run_at: datetime | None, countdown: float | None) -> datetime | None:
        """When a scheduled task is due, in UTC by the database's clock; None to run it now."""
        if run_at is None and not countdown:
            return None
        now = self.db.run(task_model.database_now)
        if countdown:
            return now + timedelta(seconds=countdown)
        assert run_at is not None
        if run_at <= now:
            raise InvalidInput("run_at is in the past.", {"run_at": ["Must be in the future."]})
        if run_at > now + timedelta(days=MAX_SCHEDULE_DAYS):
            message = f"Must be at most {MAX_SCHEDULE_DAYS} days ahead."
            raise InvalidInput(f"run_at is too far ahead: {message}", {"run_at": [message]})
        return run_at.astimezone(UTC)

    def get(
        self,
        task_id: uuid.UUID,
        wait_seconds: float = 0,
        owner: str | None = None,
        until: Callable[[threading.Event, float], object] | None = None,
    ) -> dict[str, Any]:
        """The task resource; with `wait_seconds`, as soon as it is terminal or when the wait ends.

        `until(event, seconds)` waits for the event (default: `event.wait(seconds)`); the API passes
        one that also stops when its client has gone.
        """
        if wait_seconds <= 0:
            return task_resource(self._row(task_id, owner))
        with self.watch.watching(task_id, TERMINAL) as finished:
            row = self._row(task_id, owner)
            if row.status in TERMINAL:
                return task_resource(row)
            if until is None:
                finished.wait(wait_seconds)
            else:
                until(finished, wait_seconds)
        return task_resource(self._row(task_id, owner))  # terminal now, or as it is when the wait ends

    def get_output(self, task_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        """Cache first; only terminal outputs are ever cached, so a hit is never stale.

        The cache is per owner, so a hit is also the caller's own; an admin (None) reads the row.
        """
        cached = self.cache.get_output(task_id, owner) if owner is not None else None
        if cached is not None:
            return cached
        row = self.db.run_statement(lambda c: task_model.get_output(c, task_id, owner))
        if row is None:
            raise TaskNotFound("Task not found", {"task_uuid": str(task_id)})
        output = task_output(row.status, row.result, row.error, row.progress, row.progress_message)
        if row.status in TERMINAL:
            self.cache.set_output(task_id, row.owner, output)
        return output

    def list(
        self, limit: int, cursor: str | None = None, owner: str | None = None, **filters: Any
    ) -> dict[str, Any]:
        """A page of tasks, newest first, and the cursor of the next page (None on the last)."""
        after = decode_cursor(cursor) if cursor else None
        rows = self.db.run(lambda c: task_model.list_page(c, limit + 1, after=after, owner=owner, **filters))
        next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return {"tasks": [task_resource(row) for row in rows[:limit]], "next_cursor": next_cursor}

    def limits(self, owner: str | None = None) -> dict[str, Any]:
        """Each concurrency key with unfinished tasks (of `owner`; None: everyone's): its limit, how
        many hold a slot and how many wait."""
        rows = self.db.run(lambda c: concurrency_model.summary(c, owner))
        return {"concurrency": [dict(row._mapping) for row in rows]}

    def cancel(self, task_id: uuid.UUID, owner: str | None = None) -> tuple[dict[str, Any], bool]:
        """Cancel a task; returns its resource and True if it is CANCELLED already (False: requested)."""
        if self.endings.cancel(task_id, owner) is not None:
            self._revoke(task_id)
            return task_resource(self._row(task_id, owner)), True
        if self.db.run(lambda c: task_model.request_cancel(c, task_id, owner)):
            self.watch.announce(task_id, TaskStatus.STARTED, TASK_STREAMS)
            self._revoke(task_id)
            return task_resource(self._row(task_id, owner)), False
        row = self._row(task_id, owner)
        raise Conflict(
            f"The task is {row.status}; only a WAITING, SCHEDULED, PENDING, RETRYING or STARTED "
            "task can be cancelled.",
            {"status": row.status},
        )

    def retry(self, task_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        """A new task with the same name, parameters and owner as a FAILED or CANCELLED one."""
        row = self._row(task_id, owner)
        if row.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise Conflict(
                f"The task is {row.status}; only a FAILED or CANCELLED task can be retried.",
                {"status": row.status},
            )
        return self.submit(_retry_of(row)).resource()

    def bulk_once(
        self,
        owner: str,
        key: str | None,
        action: str,
        body: dict[str, Any],
        act: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        """`act()`'s answer; under an Idempotency-Key (`key`, `owner`'s) acted on once in 24 h: a
        repeat of the same request gets the first answer and acts on nothing; another request
        under the key, or one while the first runs, is a Conflict."""
        if key is None:
            return act()
        canonical = json.dumps([action, body], sort_keys=True, separators=(",", ":"), default=str)
        request_hash = hashlib.sha256(canonical.encode()).hexdigest()
        expired = self.db.run(task_model.database_now) - timedelta(hours=IDEMPOTENCY_KEY_HOURS)
        try:
            self.db.run(lambda c: bulk_model.claim(c, owner, key, action, request_hash, expired))
        except sa.exc.IntegrityError:
            earlier = self.db.run(lambda c: bulk_model.get(c, owner, key))
            if earlier is None or earlier.request_hash != request_hash:
                raise Conflict(
                    "This Idempotency-Key was already used with a different request.",
                    {"idempotency_key": key},
                ) from None
            if earlier.answer is None:
                raise Conflict(
                    "A request with this Idempotency-Key is still running; retry shortly."
                ) from None
            return earlier.answer
        try:
            answer = act()
        except BaseException:
            self.db.run(lambda c: bulk_model.release(c, owner, key))
            raise
        self.db.run(lambda c: bulk_model.answer(c, owner, key, answer))
        return answer

    def retry_many(self, owner: str | None, limit: int = BULK_ACTION_LIMIT, **filters: Any) -> dict[str, Any]:
        """Up to `limit` of the FAILED and CANCELLED tasks the list's `filters` match (of `owner`;
        None: everyone's) that no task retries yet, each retried as retry() does, written together
        (submit_many). A repeat retries only what is still not retried: it makes nothing twice."""
        statuses = filters.pop("statuses", None) or [TaskStatus.FAILED, TaskStatus.CANCELLED]
        rows = self.db.run(
            lambda c: task_model.list_page(c, limit + 1, statuses, owner=owner, not_retried=True, **filters)
        )
        outcomes = self.submit_many([_retry_of(row) for row in rows[:limit]])
        made = [str(outcome.id) for outcome in outcomes if isinstance(outcome, Submission)]
        errors = [outcome for outcome in outcomes if isinstance(outcome, TaskerError)]
        if errors and not made:
            raise errors[0]
        return {"count": len(made), "ids": made, "failed": len(errors), "more": len(rows) > limit}

    def cancel_many(
        self, owner: str | None, limit: int = BULK_ACTION_LIMIT, **filters: Any
    ) -> dict[str, Any]:
        """Up to `limit` of the unfinished tasks the list's `filters` match (of `owner`; None:
        everyone's) cancelled as cancel() does: at once if not started, else asked to stop. A repeat
        finds them cancelled: it does nothing more."""
        statuses = filters.pop("statuses", None) or [s.value for s in task_model.UNFINISHED]
        rows = self.db.run(lambda c: task_model.list_page(c, limit + 1, statuses, owner=owner, **filters))
        ids = []
        for row in rows[:limit]:
            try:
                self.cancel(row.id, owner)
            except (Conflict, TaskNotFound):  # it ended meanwhile
                continue
            ids.append(str(row.id))
        return {"count": len(ids), "ids": ids, "more": len(rows) > limit}

    def row(self, task_id: uuid.UUID, owner: str | None = None) -> Any:
        """The task's row as `owner` may see it (None: any owner); TaskNotFound otherwise."""
        return self._row(task_id, owner)

    def _row(self, task_id: uuid.UUID, owner: str | None = None) -> Any:
        row = self.db.run(lambda c: task_model.get(c, task_id, owner))
        if row is None:
            raise TaskNotFound("Task not found", {"id": str(task_id)})
        return row

    def _revoke(self, task_id: uuid.UUID) -> None:
        # Best effort: the claim-time check is what really stops a cancelled task.
        try:
            self.broker.revoke(task_id)
        except BrokerUnavailable as exc:
            logger.warning("could not send a revoke for %s: %s", task_id, exc.details)

    def _forget(self, task_id: uuid.UUID) -> None:
        try:
            self.db.run_statement(lambda c: task_model.delete_unstarted(c, task_id))
        except DatabaseUnavailable as exc:
            # The recovery sweep publishes the row later; the broker error is the one to report.
            logger.warning("could not remove unpublished task %s: %s", task_id, exc.details)


def _retry_of(row: Any) -> SubmitRequest:
    """The submit that retries the task of `row`: its name, parameters, owner and options, under
    its concurrency key if it had one."""
    return SubmitRequest(
        row.name,
        row.parameters,
        owner=row.owner,
        priority=row.priority,
        webhook=row.webhook,
        retry_policy=row.retry_policy,
        retry_of=row.id,
        timeout_seconds=row.timeout_seconds,
        tags=row.tags,
        sealed=row.sealed,
        keyed=None if row.concurrency_key is None else (row.concurrency_key, row.concurrency_limit),
    )


def _timeout(seconds: Any, task_type: TaskType) -> int | None:
    """A submit's own hard time limit: whole seconds, at most its task type's."""
    if seconds is None:
        return None
    limit = task_type.time_limit
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= limit:
        rule = f"Must be whole seconds, 1 to {limit} ({task_type.name}'s own limit)."
        raise InvalidInput(f"Invalid timeout_seconds: {rule}", {"timeout_seconds": [rule]})
    return seconds


def _request_hash(
    name: str, parameters: dict[str, Any], request: SubmitRequest, columns: dict[str, Any]
) -> str:
    """Everything that shapes the task: a replay with another priority or time is another request."""
    shape = {
        "priority": request.priority,
        "run_at": request.run_at,
        "countdown": request.countdown,
        "webhook": columns.get("webhook"),
    }
    if request.concurrency is not None:
        shape["concurrency"] = request.concurrency
    for optional in ("retry_policy", "timeout_seconds", "tags"):  # absent when not given: earlier keys match
        if columns.get(optional) is not None:
            shape[optional] = columns[optional]
    canonical = json.dumps(
        {"name": name, "parameters": parameters} | shape, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
