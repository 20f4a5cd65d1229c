"""One wall-clock deadline per delivery attempt, whatever the receiver does."""

from __future__ import annotations

import contextlib
import socket
import threading

from urllib3.connection import HTTPConnection


class AttemptClock:
    """One wall-clock limit for a whole attempt: name lookup, connect, TLS, headers and body.

    requests' and urllib3's timeouts bound each socket operation, so a receiver that sends a
    byte every few seconds never trips them. A timer thread shuts down the socket of every
    connection the attempt uses once the limit passes; a read blocked on it returns at once and
    the attempt ends as timed out. The connections register themselves (`_GuardedConnection`)
    through a thread-local, so one clock per attempt also holds in a threaded worker.
    """

    _current = threading.local()

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = threading.Event()
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> AttemptClock:
        AttemptClock._current.clock = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        AttemptClock._current.clock = None

    @classmethod
    def current(cls) -> AttemptClock | None:
        return getattr(cls._current, "clock", None)

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
        if self.expired.is_set():
            _shut(connection)

    def _expire(self) -> None:
        self.expired.set()
        with self._lock:
            for connection in self._connections:
                _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    """Both directions of the connection's socket shut (the plain socket's call: an SSL socket's
    own would drop its TLS state under a thread still reading it)."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
