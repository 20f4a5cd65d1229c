"""kombu's filesystem transport, with messages that appear whole or not at all, and consumers
woken when one appears.

Whole or not at all: kombu creates a message file and then writes it, while a consumer may take
the file in between (it moves files without looking at the writer's lock) and read it empty; the
worker then stops on a JSONDecodeError. This Channel writes each message under a name no
consumer matches and renames it into place, an atomic step on one filesystem.

The same holds for the exchange's table of queues, which a process starting next to another
could read empty while it was being made (Channel._queue_bind).

Woken: kombu's consumer looks at the folder, and when it is empty sleeps `polling_interval`
before looking again, so a task waited half that interval on average before a worker saw it
(bench/README.md has the figures). Here each consuming process binds a Unix datagram socket in
the broker's `wake` folder and waits on it instead of sleeping; a publisher sends one byte to
every socket there after renaming its message into place, and an ack (a slot freed) wakes its
own process. The interval is then only how long a lost wake could be missed (1 s). Where Unix
sockets are not to be had (a path too long), the transport polls as kombu's does.

Tasker's Celery app selects this transport for a `filesystem://` broker through Celery's
`broker_transport` setting; kombu's own is left as it is for the rest of the process. Written
against kombu 5.7.0's virtual Transport.drain_events (its loop, with the sleep replaced);
tests/unit/test_filesystem_transport.py checks that loop is still the one replaced. The wakes are
sent as app/core/live/datagrams.py sends every datagram of the host.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import uuid
from queue import Empty
from time import monotonic, monotonic_ns
from typing import Any

from celery.worker import state as worker_state
from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

from app.core.live import datagrams

WAKE_FOLDER = "wake"
# How soon an idle worker sees Ctrl-C or SIGTERM: Celery's loop asks for its stop flag only between
# drains of up to 2 s, so the wait looks at it this often and ends the drain once it is set.
STOP_CHECK_SECONDS = 0.2
SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux


def _stopping() -> bool:
    """Whether this worker was told to stop (celery.worker.state's flags, which Celery's own
    SIGTERM and SIGINT handlers set and its consumer loop reads)."""
    flags = (worker_state.should_stop, worker_state.should_terminate)
    return any(flag is not None and flag is not False for flag in flags)  # 0 (EX_OK) is a stop, as there


def wake_folder(data_folder: str) -> str:
    """The folder of the wake sockets, beside the queue folder."""
    return os.path.join(os.path.dirname(os.path.abspath(data_folder).rstrip(os.sep)), WAKE_FOLDER)


def wake_all(folder: str) -> None:
    """One byte to every consumer's socket in `folder`; a socket nobody holds any more goes."""
    try:
        entries = [entry.path for entry in os.scandir(folder) if entry.name.endswith(".sock")]
    except OSError:
        return
    datagrams.broadcast(b"!", [(path, path) for path in entries])


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        # Consumers take names in sorted order (kombu): the clock in nanoseconds, zero-padded, keeps
        # that the order of publishing, even for messages published within one millisecond.
        name = f"{monotonic_ns():020d}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # consumers only take names ending in ".<queue>.msg"
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode())
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc
        self.connection.wake(wake_folder(self.data_folder_out))

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        """kombu's, on an exchange file that is never empty: kombu creates the file and then
        locks and writes it, and another process binding at that instant (a worker, beat and the
        API starting together on a new data folder) read it empty and stopped on a JSONDecodeError.
        The file is made whole first, under a name of its own and linked into place."""
        target = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        if not target.exists():
            partial = f"{target}.{uuid.uuid4()}.part"
            with open(partial, "w") as handle:
                handle.write("[]")
            try:
                os.link(partial, target)  # fails if another process made it first: theirs stands
            except FileExistsError:
                pass
            finally:
                os.unlink(partial)
        super()._queue_bind(exchange, routing_key, pattern, queue)

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        super().basic_ack(delivery_tag, multiple)
        self.connection.wake_self()  # a slot is free: look for the next message now


class Transport(filesystem.Transport):
    Channel = Channel
    # A folder has no host: without this kombu warns "No hostname was supplied" at every publish.
    default_connection_params: dict[str, Any] = {}  # noqa: RUF012 - kombu's class attribute

    def __init__(self, client: Any, **kwargs: Any):
        super().__init__(client, **kwargs)
        self._listener: socket.socket | None = None
        self._listener_path: str | None = None

    def wake(self, folder: str) -> None:
        wake_all(folder)

    def wake_self(self) -> None:
        if self._listener_path is not None:
            with contextlib.suppress(OSError):
                datagrams.sender().sendto(b"!", self._listener_path)

    def _listen(self) -> socket.socket | None:
        """This process's wake socket (bound on first use), or None to poll as kombu does."""
        if self._listener is not None:
            return self._listener
        options = self.client.transport_options
        folder = wake_folder(options.get("data_folder_in") or "")
        path = os.path.join(folder, f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
        if not options.get("data_folder_in") or len(path.encode()) > SOCKET_PATH_MAX:
            return None
        os.makedirs(folder, mode=0o700, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(path)
        listener.setblocking(False)
        self._listener, self._listener_path = listener, path
        return listener

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        listener = self._listen()
        if listener is None:
            return super().drain_events(connection, timeout)
        started = monotonic()
        while True:
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                waited = monotonic() - started
                if (timeout is not None and waited >= timeout) or _stopping():
                    raise TimeoutError() from None
                pause = min(self.polling_interval, STOP_CHECK_SECONDS)
                if timeout is not None:
                    pause = min(pause, timeout - waited)
                readable, _, _ = select.select([listener], [], [], pause)
                if readable:
                    with contextlib.suppress(BlockingIOError):
                        while listener.recv(64):
                            pass

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self._listener_path or "")
            self._listener = self._listener_path = None
