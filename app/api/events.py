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

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

from flask import Response
from flask_smorest import Blueprint

from app.api import schemas
from app.api.helpers import parse_id, scope
from app.api.waits import client_gone, client_socket
from app.core.errors import ServiceBusy
from app.core.streams import Change, StreamHub, Subscription
from app.core.task_manager import TaskManager
from app.models.task import TERMINAL

CHECK_SECONDS = 1.0  # how often an idle stream looks whether its client is still there
RETRY_MILLISECONDS = 2000  # how long EventSource waits before it reconnects
EVENT_STREAM_DOC = {
    "200": {
        "description": "text/event-stream: `event: task` with the v1 task resource as data; "
        "`id` is the task's revision",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}


class StreamSlots:
    """At most `limit` open streams in this process."""

    def __init__(self, limit: int):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def take(self) -> Callable[[], None]:
        """A slot (its release), or ServiceBusy."""
        if self._slots is None or not self._slots.acquire(blocking=False):
            raise ServiceBusy(
                f"Too many open event streams on this server ({self.limit}); try again shortly.",
                {"streams": self.limit},
                retry_after=1,
            )
        return self._slots.release


def create_event_routes(
    task_manager: TaskManager, hub: StreamHub, slots: StreamSlots, heartbeat: float
) -> Blueprint:
    bp = Blueprint("events", __name__, url_prefix="/api/v1", description="Live task changes (SSE)")

    def stream(subscription: Subscription, resources: ExitStack) -> Response:
        events = _events(subscription, client_socket(), heartbeat)
        response = Response(events, mimetype="text/event-stream")
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        response.call_on_close(resources.close)
        return response

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
        resources.callback(slots.take())
        try:
            subscription = Subscription(lambda row: row.id == task, task, last_event_id or 0)
            resources.enter_context(hub.subscribe(subscription))
            row = task_manager.row(task, owner)  # after subscribing: no change is missed
            if row.status in TERMINAL and last_event_id is not None and last_event_id >= row.revision:
                resources.close()
                return Response(status=204)
            subscription.offer(Change(row))
            return stream(subscription, resources)
        except BaseException:
            resources.close()
            raise

    @bp.get("/events")
    @bp.doc(
        summary="Changes of the caller's tasks, live (Server-Sent Events), with the list's filters",
        operationId="events",
        responses=EVENT_STREAM_DOC,
    )
    @bp.arguments(schemas.TaskFilters(), location="query", as_kwargs=True)
    def events(
        status: list[str] | None = None, name: str | None = None, owner: str | None = None
    ) -> Response:
        visible = scope(owner)
        statuses = frozenset(status or ())

        def match(row: Any) -> bool:
            return (
                (visible is None or row.owner == visible)
                and (not statuses or row.status in statuses)
                and (not name or row.name == name)
            )

        resources = ExitStack()
        resources.callback(slots.take())
        try:
            subscription = resources.enter_context(hub.subscribe(Subscription(match)))
            return stream(subscription, resources)
        except BaseException:
            resources.close()
            raise

    return bp


def _events(subscription: Subscription, client: Any, heartbeat: float) -> Iterator[str]:
    single = subscription.task_id is not None
    yield f"retry: {RETRY_MILLISECONDS}\n\n"
    quiet_since = time.monotonic()
    while True:
        rows = subscription.next(CHECK_SECONDS)
        if rows is None:  # closed: the server is shutting down
            return
        for row in rows:
            yield _event(row, single)
        if rows:
            quiet_since = time.monotonic()
            if single and rows[-1].status in TERMINAL:
                return
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
