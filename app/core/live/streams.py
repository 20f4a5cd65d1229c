"""Live task changes for the event streams (Server-Sent Events) of one API process.

The process's one change listener (app/core/live/changes.py: Redis pub/sub, or datagrams on the
embedded stack) tells the hub which tasks changed. One dispatcher thread reads those rows in one
query and offers each row to every open stream that wants it; a stream keeps, per task, only the
newest row it has not sent yet, so a slow client is sent the latest state, never a backlog.
Every `fallback_seconds` the dispatcher also reads the rows of the tasks that single-task streams
follow, which catches a change whose announcement was lost or skipped (writers announce progress
and new tasks only while streams are open somewhere, and learn of it within a second; see
ChangeFeed.wanted). However many streams are open, the database sees one query per burst of
changes and one per fallback interval.

Every row carries a revision that each write raises (migration 0009): a stream sends a task
only when its revision is higher than the last one sent, and a client that reconnects with
`Last-Event-ID` (the revision) is sent the task again only if it changed since.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.core.errors import DependencyUnavailable
from app.core.live.changes import LIST_STREAMS, TASK_STREAMS, WANTED_TTL, Watch
from app.core.resources import task_resource

logger = logging.getLogger(__name__)

BATCH = 500  # rows read in one query
SEEN_LIMIT = 10_000  # revisions a list stream remembers; past it, the older half is forgotten

_HUBS: weakref.WeakSet[StreamHub] = weakref.WeakSet()


def close_all() -> None:
    """End every open stream of this process (the server is shutting down): clients reconnect
    elsewhere with their Last-Event-ID."""
    for hub in list(_HUBS):
        hub.close_streams()


class Change:
    """A changed row as the streams see it; its event data is rendered once, by the first stream
    that sends it, for all of them (a list stream per dashboard: one task's change, many streams)."""

    def __init__(self, row: Any):
        self.row = row
        self.id, self.revision, self.status = row.id, row.revision, row.status
        self.owner, self.name, self.tags = row.owner, row.name, getattr(row, "tags", None)
        self._data: str | None = None

    @property
    def data(self) -> str:
        if self._data is None:  # two threads may both render it: the same text, no harm
            self._data = json.dumps(task_resource(self.row), separators=(",", ":"))
        return self._data


def _size(row: Any) -> int:
    """A change's size as its event will be (a Change renders its data once, for every stream)."""
    data = getattr(row, "data", None)
    return len(data) if isinstance(data, str) else 0


class Subscription:
    """What one stream is sent: the rows it matches, newest per task, in the order they came."""

    def __init__(
        self,
        match: Callable[[Any], bool],
        task_id: uuid.UUID | None = None,
        after: int = 0,
        backlog_bytes: int = 1024 * 1024,
    ):
        self.match = match
        self.task_id = task_id
        self.backlog_bytes = backlog_bytes
        self._sent: dict[uuid.UUID, int] = {task_id: after} if task_id is not None else {}
        self._pending: dict[uuid.UUID, Any] = {}
        self._pending_bytes = 0
        self._ready = threading.Condition()
        self.closed = False
        self.behind = False  # closed because its reader fell more than backlog_bytes behind

    def offer(self, row: Any) -> None:
        if not self.match(row):
            return
        with self._ready:
            if row.revision <= self._sent.get(row.id, 0):
                return
            self._sent[row.id] = row.revision
            if len(self._sent) > SEEN_LIMIT:
                self._sent = dict(list(self._sent.items())[SEEN_LIMIT // 2 :])
            if self.closed:
                return
            replaced = self._pending.pop(row.id, None)  # moved to the end: the order of the latest changes
            self._pending_bytes += _size(row) - (_size(replaced) if replaced is not None else 0)
            self._pending[row.id] = row
            if self._pending_bytes > self.backlog_bytes:
                # Its reader is not keeping up (or not reading): close the stream, with a last
                # event saying why, rather than hold changes for it without end.
                self._pending.clear()
                self._pending_bytes = 0
                self.behind = self.closed = True
            self._ready.notify()

    def next(self, timeout: float) -> list[Any] | None:
        """The rows waiting to be sent (maybe none, after `timeout` seconds); None once closed."""
        with self._ready:
            if not self._pending and not self.closed:
                self._ready.wait(timeout)
            if self.closed:
                return None
            rows = list(self._pending.values())
            self._pending.clear()
            self._pending_bytes = 0
            return rows

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._ready.notify_all()


class StreamHub:
    """The open streams of this process, and the thread that feeds them."""

    def __init__(
        self,
        watch: Watch,
        read_rows: Callable[[list[uuid.UUID]], list[Any]],
        fallback_seconds: float = 1.0,
    ):
        self.watch = watch
        self.read_rows = read_rows
        self.fallback_seconds = fallback_seconds
        self._lock = threading.Lock()
        self._streams: set[Subscription] = set()
        self._followed: Counter[uuid.UUID] = Counter()  # the tasks single-task streams follow
        self._lists = 0  # open list streams
        self._advertised = 0.0
        self._changed: set[uuid.UUID] = set()
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        watch.add_hook(self._on_change)
        _HUBS.add(self)

    @contextmanager
    def subscribe(self, subscription: Subscription) -> Iterator[Subscription]:
        """Register `subscription` while the block runs; offer it rows before reading the first
        state, so that no change between that read and the registration is missed."""
        self.watch.listening()
        with self._lock:
            self._streams.add(subscription)
            if subscription.task_id is None:
                self._lists += 1
            else:
                self._followed[subscription.task_id] += 1
            if self._thread is None or not self._thread.is_alive():  # none yet, or not in this fork
                self._thread = threading.Thread(target=self._dispatch, name="tasker-streams", daemon=True)
                self._thread.start()
        self._advertise(force=subscription.task_id is None)
        try:
            yield subscription
        finally:
            with self._lock:
                self._streams.discard(subscription)
                if subscription.task_id is None:
                    self._lists -= 1
                else:
                    self._followed[subscription.task_id] -= 1
                    if not self._followed[subscription.task_id]:
                        del self._followed[subscription.task_id]
            subscription.close()

    def close_streams(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for subscription in streams:
            subscription.close()

    def _advertise(self, force: bool = False) -> None:
        """Tell writers (through the feed) which changes this process's streams need."""
        now = time.monotonic()
        if not force and now - self._advertised < WANTED_TTL / 3:
            return
        self._advertised = now
        if self._lists:
            self.watch.feed.want(TASK_STREAMS, LIST_STREAMS)
        elif self._followed:
            self.watch.feed.want(TASK_STREAMS)

    def _on_change(self, task_id: uuid.UUID, status: str) -> None:
        if not self._lists and task_id not in self._followed:
            return  # nobody here follows it: the dispatcher sleeps on
        with self._lock:
            self._changed.add(task_id)
        self._wakeup.set()

    def _dispatch(self) -> None:
        while True:
            announced = self._wakeup.wait(self.fallback_seconds)
            with self._lock:
                self._wakeup.clear()
                changed, self._changed = self._changed, set()
                streams = list(self._streams)
            if not streams:
                continue
            self._advertise()
            followed = {s.task_id for s in streams if s.task_id is not None}
            if len(followed) < len(streams):
                wanted = changed  # a list stream may want any task
            else:
                wanted = changed & followed
            if not announced:
                wanted |= followed  # the read-back: a lost announcement costs latency, not the change
            self._send(sorted(wanted), streams)

    def _send(self, task_ids: list[uuid.UUID], streams: list[Subscription]) -> None:
        for start in range(0, len(task_ids), BATCH):
            chunk = task_ids[start : start + BATCH]
            try:
                rows = self.read_rows(chunk)
            except DependencyUnavailable as exc:  # the fallback reads followed tasks again
                logger.warning("event streams could not read changed tasks: %s", exc)
                return
            for row in rows:
                change = Change(row)
                for subscription in streams:
                    subscription.offer(change)
