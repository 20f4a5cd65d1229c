"""How many requests of one API process may hold a thread waiting (`?wait=`), and for how long.

Each waiting request holds one of the process's threads (gunicorn gthread). Past `limit`
concurrent waits a request answers at once with the task as it is, and says so in the
`Tasker-Wait` header, so waiting clients can never take every thread from /health and submits.
A wait also ends as soon as its client disconnects, instead of holding the thread until the end.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

from flask import request

CHECK_SECONDS = 0.5  # how often a waiting request looks whether its client is still there


class WaitSlots:
    def __init__(self, limit: int):
        self.limit = limit
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    @contextlib.contextmanager
    def slot(self) -> Iterator[bool]:
        """True (and a slot held for the block) if a wait may start now."""
        if self._slots is None or not self._slots.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            self._slots.release()

    @staticmethod
    def until_or_gone(event: threading.Event, seconds: float) -> None:
        """Wait for `event` up to `seconds`; return early when the client has gone."""
        client = client_socket()
        remaining = seconds
        while remaining > 0:
            step = min(CHECK_SECONDS, remaining)
            if event.wait(step):
                return
            remaining -= step
            if client is not None and client_gone(client):
                return


def client_socket() -> socket.socket | None:
    # gunicorn gives the connection's socket; the development server gives none (waits run out).
    candidate = request.environ.get("gunicorn.socket")
    return candidate if isinstance(candidate, socket.socket) else None


def client_gone(client: socket.socket) -> bool:
    """True if the peer closed the connection (readable, and a peek reads nothing)."""
    try:
        poller = select.poll()  # not select(): it fails on descriptors past 1024
        poller.register(client, select.POLLIN)
        if not poller.poll(0):
            return False
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except OSError:
        return True
