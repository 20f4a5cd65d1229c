"""One datagram to every listening process of this host: how the embedded stack's change feed
(app/core/live/changes.py) announces a change, and how the filesystem broker wakes its consumers
(app/core/broker/filesystem_transport.py).

Each listener binds a Unix datagram socket and leaves a file that names it; a sender sends one
non-blocking datagram to each. A listener that refuses is gone, and its file is removed; one
whose buffer is full is skipped (it has been woken already, or the reader's fallback finds the
change).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
from collections.abc import Iterable

logger = logging.getLogger(__name__)

_SENDERS: dict[int, socket.socket] = {}


def sender() -> socket.socket:
    """This process's one socket for sending datagrams (kept for the life of the process)."""
    found = _SENDERS.get(os.getpid())
    if found is None:
        for inherited in _SENDERS.values():  # a forked child does not use its parent's
            inherited.close()
        _SENDERS.clear()
        found = _SENDERS[os.getpid()] = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        found.setblocking(False)
        atexit.register(found.close)
    return found


def broadcast(data: bytes, listeners: Iterable[tuple[str, str]]) -> None:
    """`data` to each (address, file) listener; the file of one that is gone is removed."""
    out = sender()
    for address, file in listeners:
        try:
            out.sendto(data, address)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):
                os.unlink(file)  # its process is gone
        except OSError as exc:  # e.g. its buffer is full
            logger.debug("no datagram to %s: %s", file, exc)
