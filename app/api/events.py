"""Live task changes over Server-Sent Events: one task's, or every task the caller may list.

A stream holds one of the process's threads while it is open (gunicorn gthread), so each process
takes at most STREAM_MAX_CONCURRENT of them, on threads of their own (gunicorn.conf.py adds that
many to GUNICORN_THREADS): open streams never take the threads that answer requests. Past the
bound a stream is refused with a 503 and Retry-After.

The event stream of a task:

    id: <revision>          (Last-Event-ID on reconnect: resume after it)
    event: task
    data: <the v1 task resource>

The first event is the task as it is (unless Last-Event-ID says the client has it); the stream
ends after the terminal one. A comment line is sent every STREAM_HEARTBEAT_SECONDS so proxies
keep the connection, and the stream ends when the server shuts down (EventSource reconnects, to
another process, with its Last-Event-ID). A reconnect to a finished task the client has seen in
full is answered 204, which tells EventSource to stop.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from flask import Response, g
from flask_smorest import Blueprint

from app.api import schemas
from app.api.helpers import parse_id, scope
from app.api.waits import client_gone, client_socket
from app.core.errors import InvalidInput, ServiceBusy
from app.core.live.streams import Change, StreamHub, Subscription
from app.core.quotas import QuotaExceeded
from app.core.task_manager import TaskManager
from app.core.workflows.manager import WorkflowManager
from app.models.task import TERMINAL

CHECK_SECONDS = 1.0  # how often an idle stream looks whether its client is still there
RETRY_MILLISECONDS = 2000  # how long EventSource waits before it reconnects
# The last event of a stream whose client read too slowly (STREAM_BACKLOG_KB waited for it).
BEHIND_EVENT = (
    'event: closed\ndata: {"reason":"behind","message":"This stream fell too far behind its reader and '
    "was closed; reconnect (a task's stream resumes from Last-Event-ID, the list from now).\"}\n\n"
)
EVENT_STREAM_DOC = {
    "200": {
        "description": "text/event-stream: `event: task` with the v1 task resource as data; "
        "`id` is the task's revision",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


class StreamSlots:
    """At most `limit` open streams in this process, and (keys mode) `per_owner` of one owner's."""

    def __init__(self, limit: int, per_owner: int | None = None):
        self.limit = limit
        self.per_owner = per_owner
        self._slots = threading.BoundedSemaphore(limit) if limit else None
        self._lock = threading.Lock()
        self._owners: Counter[str] = Counter()

    def take(self, owner: str) -> Callable[[], None]:
        """A slot (its release); 503 ServiceBusy when the process is full, 429 QuotaExceeded when
        the owner holds its share already."""
        with self._lock:
            if self.per_owner is not None and self._owners[owner] >= self.per_owner:
                raise QuotaExceeded(
                    "streams",
                    self.per_owner,
                    f"This owner has {self.per_owner} event streams open on this server, the most one owner "
                    "may (STREAM_MAX_PER_OWNER); close one first.",
                )
            if self._slots is None or not self._slots.acquire(blocking=False):
                raise ServiceBusy(
                    f"Too many open event streams on this server ({self.limit}); try again shortly.",
                    {"streams": self.limit},
                    retry_after=1,
                )
            self._owners[owner] += 1

        def release() -> None:
            with self._lock:
                self._owners[owner] -= 1
                if not self._owners[owner]:
                    del self._owners[owner]
            self._slots.release()

        return release


@dataclass(frozen=True)
class StreamLimits:
    heartbeat: float = 15.0  # STREAM_HEARTBEAT_SECONDS
    backlog_bytes: int = 1024 * 1024  # STREAM_BACKLOG_KB: what may wait for a slow reader
    send_timeout: float = (
        30.0  # STREAM_SEND_TIMEOUT_SECONDS: a send that makes no progress for this long ends it
    )


def create_event_routes(
    task_manager: TaskManager,
    hub: StreamHub,
    slots: StreamSlots,
    limits: StreamLimits,
    workflows: WorkflowManager,
) -> Blueprint:
    bp = Blueprint("events", __name__, url_prefix="/api/v1", description="Live task changes (SSE)")

    @bp.get("/tasks/<id:task_id>/events")
    @bp.doc(
        summary="A task's status and progress changes, live (Server-Sent Events)",
        operationId="taskEvents",
        responses={
            **EVENT_STREAM_DOC,
            "204": {"description": "The task is finished and Last-Event-ID is its last event"},
        },
    )
    @bp.arguments(schemas.LastEventHeaders(), location="headers", as_kwargs=True)
    def task_events(task_id: str, last_event_id: int | None = None) -> Response:
        task = parse_id(task_id)
        owner = scope()
        resources = ExitStack()
        resources.callback(slots.take(g.principal.owner))
        try:
            subscription = Subscription(
                lambda row: row.id == task, task, last_event_id or 0, limits.backlog_bytes
            )
            resources.enter_context(hub.subscribe(subscription))
            row = task_manager.row(task, owner)  # after subscribing: no change is missed
            _check_last_event_id(last_event_id, row.revision)
            if row.status in TERMINAL and last_event_id is not None and last_event_id >= row.revision:
                resources.close()
                return Response(status=204)
            subscription.offer(Change(row))
            return _stream(subscription, resources, limits)
        except BaseException:
            resources.close()
            raise

    _add_list_events(bp, hub, slots, limits)
    _add_workflow_events(bp, task_manager, workflows, hub, slots, limits)
    return bp


def _add_list_events(bp: Blueprint, hub: StreamHub, slots: StreamSlots, limits: StreamLimits) -> None:
    @bp.get("/events")
    @bp.doc(
        summary="Changes of the caller's tasks, live (Server-Sent Events), with the list's filters",
        operationId="events",
        responses=EVENT_STREAM_DOC,
    )
    @bp.arguments(schemas.TaskFilters(), location="query", as_kwargs=True)
    def events(owner: str | None = None, **filters: Any) -> Response:
        match = _list_match(scope(owner), **filters)
        resources = ExitStack()
        resources.callback(slots.take(g.principal.owner))
        try:
            subscription = resources.enter_context(
                hub.subscribe(Subscription(match, backlog_bytes=limits.backlog_bytes))
            )
            return _stream(subscription, resources, limits)
        except BaseException:
            resources.close()
            raise


def _add_workflow_events(
    bp: Blueprint,
    task_manager: TaskManager,
    workflows: WorkflowManager,
    hub: StreamHub,
    slots: StreamSlots,
    limits: StreamLimits,
) -> None:
    @bp.get("/workflows/<id:workflow_id>/events")
    @bp.doc(
        summary="A workflow's step changes, live (Server-Sent Events), ending with the workflow",
        operationId="workflowEvents",
        responses={
            "200": {
                "description": "text/event-stream: `event: workflow` (the workflow resource) first and last, "
                "`event: task` (a step's task resource) for each step's change between",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    def workflow_events(workflow_id: str) -> Response:
        wanted, owner = parse_id(workflow_id, "workflow"), scope()
        resources = ExitStack()
        resources.callback(slots.take(g.principal.owner))
        try:
            subscription = Subscription(
                lambda change: change.row.workflow_id == wanted, backlog_bytes=limits.backlog_bytes
            )
            resources.enter_context(hub.subscribe(subscription))
            first = workflows.get(wanted, owner)  # after subscribing: no change is missed
            stream = _WorkflowStream(
                subscription,
                first,
                lambda: workflows.get(wanted, owner),
                lambda t: task_manager.row(t, owner),
            )
            response = Response(
                stream.events(client_socket(), limits.heartbeat), mimetype="text/event-stream"
            )
            response.headers["X-Accel-Buffering"] = "no"
            response.call_on_close(resources.close)
            return response
        except BaseException:
            resources.close()
            raise


class _WorkflowStream:
    """The workflow, each change of its steps, and the workflow again once it has ended. A step
    whose last change had not reached the stream when the workflow's end was read is sent from its
    row then, so the stream never ends without a step's final status."""

    def __init__(
        self, subscription: Subscription, first: dict[str, Any], read_workflow: Callable[[], Any],
        read_task: Callable[[uuid.UUID], Any],
    ):  # fmt: skip
        self.subscription = subscription
        self.first = first
        self.read_workflow = read_workflow
        self.read_task = read_task
        self.sent = {step["task_id"]: step["status"] for step in first["steps"] if step["task_id"]}

    def events(self, client: Any, heartbeat: float) -> Iterator[str]:
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        yield _workflow_event(self.first)
        if self.first["status"] != "RUNNING":
            return
        for batch in _batches(self.subscription, client, heartbeat):
            if isinstance(batch, str):
                yield batch
                continue
            for row in batch:
                self.sent[str(row.id)] = row.status
                yield _event(row, False)
            if any(row.status in TERMINAL for row in batch):
                workflow = self.read_workflow()
                if workflow["status"] != "RUNNING":
                    yield from self._missed(workflow)
                    yield _workflow_event(workflow)
                    return

    def _missed(self, workflow: dict[str, Any]) -> Iterator[str]:
        for step in workflow["steps"]:
            if step["task_id"] and self.sent.get(step["task_id"]) != step["status"]:
                yield _event(Change(self.read_task(uuid.UUID(step["task_id"]))), False)


def _workflow_event(workflow: dict[str, Any]) -> str:
    return f"event: workflow\ndata: {json.dumps(workflow, separators=(',', ':'))}\n\n"


def _list_match(
    visible: str | None,
    status: list[str] | None = None,
    name: str | None = None,
    tag: list[str] | None = None,
) -> Callable[[Any], bool]:
    """What the list stream sends: the caller's tasks (an admin's: `visible`'s, or all), filtered
    (`tag`: carrying every one)."""
    statuses, tags = frozenset(status or ()), frozenset(tag or ())

    def match(row: Any) -> bool:
        return (
            (visible is None or row.owner == visible)
            and (not statuses or row.status in statuses)
            and (not name or row.name == name)
            and (not tags or tags <= set(row.tags or ()))
        )

    return match


def _stream(subscription: Subscription, resources: ExitStack, limits: StreamLimits) -> Response:
    client = client_socket()
    if client is not None:
        # A client that stops reading: the send blocks at most this long, then the stream ends.
        client.settimeout(limits.send_timeout)
    response = Response(_events(subscription, client, limits.heartbeat), mimetype="text/event-stream")
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    response.call_on_close(resources.close)
    return response


def _check_last_event_id(last_event_id: int | None, revision: int) -> None:
    """A Last-Event-ID past the task's latest event would wait for an event that may never come."""
    if last_event_id is not None and last_event_id > revision:
        rule = f"At most the task's latest event id ({revision})."
        raise InvalidInput(f"Last-Event-ID is beyond this task's events: {rule}", {"Last-Event-ID": [rule]})


def _events(subscription: Subscription, client: Any, heartbeat: float) -> Iterator[str]:
    single = subscription.task_id is not None
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    for batch in _batches(subscription, client, heartbeat):
        if isinstance(batch, str):
            yield batch
            continue
        for row in batch:
            yield _event(row, single)
        if single and batch[-1].status in TERMINAL:
            return


def _batches(subscription: Subscription, client: Any, heartbeat: float) -> Iterator[list[Change] | str]:
    """What every stream sends: each batch of changes as it comes, a keep-alive comment after
    `heartbeat` quiet seconds, and at the end BEHIND_EVENT if the subscription was closed because
    its client fell too far behind. It ends when the subscription is closed (the server shutting
    down) or the client has gone."""
    quiet_since = time.monotonic()
    while True:
        rows = subscription.next(CHECK_SECONDS)
        if rows is None:
            if subscription.behind:
                yield BEHIND_EVENT
            return
        if rows:
            quiet_since = time.monotonic()
            yield rows
            continue
        if client is not None and client_gone(client):
            return
        if time.monotonic() - quiet_since >= heartbeat:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"


def _event(change: Change, single: bool) -> str:
    """A task's event; only a single task's stream has ids to resume from (its revisions)."""
    event = f"event: task\ndata: {change.data}\n\n"
    return f"id: {change.revision}\n{event}" if single else event
