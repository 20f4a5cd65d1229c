"""Task change notifications: writers announce a committed change, readers wait for one.

A writer (submit, claim, progress, retry, outcome, cancel, the scheduler and the recovery sweep)
calls `announce(task_id, status)` after its change is committed. On the real stack that is one
Redis PUBLISH; on the embedded stack (no Redis) one datagram to each listening process of the
host (LocalFeed). Each API process runs one listener thread, which wakes the requests waiting on
that task and tells the process's event streams (app/core/live/streams.py). Another thread reads, in
one query, the status of every task still waited on, every `fallback_seconds`: that catches a
change whose announcement was lost (its writer died between the commit and the announcement, or
Redis was away). Either way the database sees at most one query per fallback interval per
process, however many requests wait, plus each request's own reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from app.core.errors import DependencyUnavailable
from app.core.live import datagrams

logger = logging.getLogger(__name__)

CHANNEL = "tasker:task-changes"
# Who needs an announcement. Outcomes and cancels: always (`?wait=` and every stream). A task's
# other changes (claim, progress, retry) only while some API process has event streams open, and
# a new task only while one has a list stream open: writers then skip the PUBLISH, and no API
# process spends time on messages nobody reads (bench/streams.py).
TASK_STREAMS, LIST_STREAMS = "task", "list"
WANTED_KEY = "tasker:streams-open:"
WANTED_TTL = 15  # seconds an API process's "streams open here" lasts unless renewed
WANTED_CACHE_SECONDS = 1.0  # a writer reads those flags at most this often
SUBSCRIBE_TIMEOUT = 2.0  # how long a process's first wait lets the listener subscribe
RECONNECT_SECONDS = 1.0


class ChangeFeed:
    """Where announcements go: Redis pub/sub, or nowhere beyond this process."""

    def __init__(self, client: redis.Redis | None = None):
        self.client = client
        self._wanted: tuple[float, frozenset[str]] = (0.0, frozenset())

    @classmethod
    def from_url(cls, url: str | None, data_dir: str | None = None) -> ChangeFeed | LocalFeed:
        if url is None:
            return LocalFeed(Path(data_dir) / "changes") if data_dir else cls()
        return cls(redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2))

    def wanted(self, kind: str) -> bool:
        """Whether an API process has streams of `kind` open (TASK_STREAMS, LIST_STREAMS): read
        from Redis at most once a second per process."""
        if self.client is None:
            return False
        until, kinds = self._wanted
        now = time.monotonic()
        if now >= until:
            try:
                both = (TASK_STREAMS, LIST_STREAMS)
                flags = self.client.mget([WANTED_KEY + kind for kind in both])
                kinds = frozenset(kind for kind, flag in zip(both, flags, strict=True) if flag)
            except redis.RedisError:
                kinds = frozenset()  # Redis is away: the announcement could not be sent either
            self._wanted = (now + WANTED_CACHE_SECONDS, kinds)
        return kind in kinds

    def want(self, *kinds: str) -> None:
        """This process has streams of `kinds` open: writers announce what they need for a while."""
        if self.client is None:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for kind in kinds:
                    pipe.set(WANTED_KEY + kind, "1", ex=WANTED_TTL)
                pipe.execute()
        except redis.RedisError as exc:
            logger.warning("could not tell writers that event streams are open: %s", exc)

    def pipelined(self, message: str) -> tuple[str, str] | None:
        """(channel, message) for a caller that PUBLISHes it with a write of its own to the same
        Redis (one round trip instead of two); None without Redis."""
        return None if self.client is None else (CHANNEL, message)

    def send_change(self, message: str) -> None:
        if self.client is None:
            return
        try:
            self.client.publish(CHANNEL, message)
        except redis.RedisError as exc:  # the fallback read finds the change; it costs latency only
            logger.warning("could not announce a task change: %s", exc)

    def listen(
        self, deliver: Callable[[dict[str, Any]], None], stop: threading.Event, subscribed: threading.Event
    ) -> None:
        """Deliver each announcement until `stop` is set; `subscribed` is set once nothing can be missed."""
        if self.client is None:
            subscribed.set()  # announcements reach only this process: there is nothing to subscribe to
            stop.wait()
            return
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)  # sent before any PUBLISH that follows it, so none is missed
            subscribed.set()
            while not stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is not None:
                    deliver(json.loads(message["data"]))
        finally:
            pubsub.close()


class LocalFeed:
    """Announcements between the processes of one host (the embedded stack, which has no Redis).

    Each listening process binds a datagram socket in Linux's abstract namespace (no path-length
    limit, gone with the process) and leaves a file of the same name in `directory`; a
    writer sends one non-blocking datagram to each. A listener that died is forgotten when a
    send to it is refused. A datagram that cannot be sent is left to the read-back.
    """

    client = None

    def __init__(self, directory: Path):
        self.directory = directory
        self._prefix = "tasker-changes-" + hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]

    def _address(self, name: str) -> str:
        return f"\0{self._prefix}-{name}"

    def send_change(self, message: str) -> None:
        try:
            names = [entry.name for entry in os.scandir(self.directory)]
        except FileNotFoundError:
            return  # nobody has listened yet
        datagrams.broadcast(message.encode(), [(self._address(n), str(self.directory / n)) for n in names])

    def pipelined(self, message: str) -> None:
        self.send_change(message)
        return None

    def wanted(self, kind: str) -> bool:
        return True  # a datagram to the host's few processes costs next to nothing

    def want(self, *kinds: str) -> None:
        return None

    def listen(
        self, deliver: Callable[[dict[str, Any]], None], stop: threading.Event, subscribed: threading.Event
    ) -> None:
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # a process may hold several apps (tests)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.bind(self._address(name))
            receiver.settimeout(1.0)
            (self.directory / name).touch()
            subscribed.set()
            while not stop.is_set():
                try:
                    data = receiver.recv(65536)
                except TimeoutError:
                    continue
                deliver(json.loads(data))
        finally:
            receiver.close()
            (self.directory / name).unlink(missing_ok=True)


class Watch:
    """Lets request threads wait for a task to reach one of some statuses."""

    def __init__(
        self,
        feed: ChangeFeed | LocalFeed,
        read_statuses: Callable[[Iterable[uuid.UUID]], dict[uuid.UUID, str]],
        fallback_seconds: float = 1.0,
    ):
        self.feed = feed
        self.read_statuses = read_statuses
        self.fallback_seconds = fallback_seconds
        self._lock = threading.Lock()
        self._waiting: dict[uuid.UUID, list[tuple[frozenset[str], threading.Event]]] = {}
        self._pid = 0
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._hooks: list[Callable[[uuid.UUID, str], None]] = []

    def add_hook(self, hook: Callable[[uuid.UUID, str], None]) -> None:
        """Call `hook(task_id, status)` for every change this process hears of (in the listener)."""
        self._hooks.append(hook)

    def listening(self) -> None:
        """Make sure this process's listener runs and has subscribed (or given up for now)."""
        with self._lock:
            self._ensure_threads()
        self._subscribed.wait(SUBSCRIBE_TIMEOUT)

    def announce(self, task_id: uuid.UUID, status: str, needed_by: str | None = None) -> None:
        """Tell waiters here and, through the feed, in every other process; call after the commit.

        `needed_by` (TASK_STREAMS, LIST_STREAMS): announce beyond this process only while streams
        of that kind are open somewhere; None (outcomes, cancels): always."""
        self._notify(task_id, status)
        if needed_by is None or self.feed.wanted(needed_by):
            self.feed.send_change(json.dumps({"id": str(task_id), "status": status}))

    def announcement(self, task_id: uuid.UUID, status: str) -> tuple[str, str] | None:
        """Tell waiters here, and return the (channel, message) for the caller to PUBLISH along with
        a write of its own to the same Redis (one round trip instead of two); None without Redis
        (the announcement is then made here)."""
        self._notify(task_id, status)
        return self.feed.pipelined(json.dumps({"id": str(task_id), "status": status}))

    @contextmanager
    def watching(self, task_id: uuid.UUID, statuses: Iterable[str]) -> Iterator[threading.Event]:
        """An Event set once the task is announced (or read back) in one of `statuses`.

        Watch before reading the row, so a change between the read and the wait is not missed.
        """
        event, wanted = threading.Event(), frozenset(statuses)
        with self._lock:
            self._ensure_threads()
            self._waiting.setdefault(task_id, []).append((wanted, event))
        # The first wait of a process starts the listener; a change announced before it has
        # subscribed would only be found by the read-back.
        self._subscribed.wait(SUBSCRIBE_TIMEOUT)
        try:
            yield event
        finally:
            with self._lock:
                entries = self._waiting.get(task_id, [])
                entries.remove((wanted, event))
                if not entries:
                    self._waiting.pop(task_id, None)

    def close(self) -> None:
        self._stop.set()

    def _deliver(self, message: dict[str, Any]) -> None:
        """An announcement heard from the feed (maybe another process's)."""
        try:
            task_id = uuid.UUID(str(message["id"]))
        except (KeyError, ValueError):
            return
        self._notify(task_id, str(message.get("status")))

    def _notify(self, task_id: uuid.UUID, status: str) -> None:
        """Wake this process's waiters on the task, and tell its streams."""
        self._wake(task_id, status)
        for hook in self._hooks:
            hook(task_id, status)

    def _wake(self, task_id: uuid.UUID, status: str) -> None:
        with self._lock:
            for wanted, event in self._waiting.get(task_id, ()):
                if status in wanted:
                    event.set()

    def _ensure_threads(self) -> None:
        # Threads do not survive a fork (gunicorn, Celery prefork): start them in each process.
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop, self._subscribed = threading.Event(), threading.Event()
        threading.Thread(target=self._listen, name="tasker-change-listener", daemon=True).start()
        threading.Thread(target=self._read_back, name="tasker-change-reader", daemon=True).start()

    def _listen(self) -> None:
        stop, subscribed = self._stop, self._subscribed
        while not stop.is_set():
            try:
                self.feed.listen(self._deliver, stop, subscribed)
            except (redis.RedisError, OSError, ValueError) as exc:
                subscribed.set()  # nobody waits for a Redis that is down: the read-back covers it
                if stop.is_set():
                    return
                logger.warning("task change listener: %s; reconnecting", exc)
                stop.wait(RECONNECT_SECONDS)

    def _read_back(self) -> None:
        stop = self._stop
        while not stop.wait(self.fallback_seconds):
            with self._lock:
                ids = list(self._waiting)
            if not ids:
                continue
            try:
                statuses = self.read_statuses(ids)
            except DependencyUnavailable as exc:  # tried again next interval
                logger.warning("task change read-back failed: %s", exc)
                continue
            for task_id, status in statuses.items():
                self._wake(task_id, status)
