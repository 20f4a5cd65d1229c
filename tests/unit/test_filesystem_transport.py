"""The embedded broker's messages appear whole or not at all (a consumer never reads a half-written one)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from celery import Celery, Task
from kombu import Connection
from kombu.transport import filesystem

from app.core.broker import filesystem_transport
from app.core.celery_app import create_celery
from config import load_config


def channel(folder: Path, transport: object) -> object:
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    return Connection("filesystem://", transport=transport, transport_options=options).channel()


def test_taskers_celery_app_alone_uses_the_atomic_transport(tmp_path):
    config = load_config("testing", {"TASKER_DATA_DIR": str(tmp_path)})
    celery = create_celery("t", config, ["default"], Celery, Task)
    with celery.connection_for_write() as conn:
        assert isinstance(conn.transport, filesystem_transport.Transport)
    with Connection("filesystem://") as conn:  # the rest of the process keeps kombu's own
        assert type(conn.transport) is filesystem.Transport


def test_a_message_is_whole_before_any_consumer_can_see_it(tmp_path, monkeypatch):
    ch = channel(tmp_path, filesystem_transport.Transport)
    seen = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        visible = [name for name in os.listdir(tmp_path) if name.endswith(".q.msg")]
        seen.append((visible, json.loads(Path(src).read_text())))
        real_replace(src, dst)

    monkeypatch.setattr(filesystem_transport.os, "replace", spy)
    ch._put("q", {"body": "hello"})
    assert seen == [([], {"body": "hello"})]
    assert ch._get("q") == {"body": "hello"}


def test_a_consumer_racing_a_producer_gets_every_message_intact(tmp_path):
    producer = channel(tmp_path, filesystem_transport.Transport)
    consumer = channel(tmp_path, filesystem_transport.Transport)
    count = 2000

    def produce() -> None:
        for n in range(count):
            producer._put("q", {"n": n, "pad": "x" * 2000})

    thread = threading.Thread(target=produce)
    thread.start()
    received = []
    while len(received) < count:
        try:
            received.append(consumer._get("q")["n"])  # kombu's own Channel raised JSONDecodeError here
        except filesystem.Empty:
            if not thread.is_alive() and not any(n.endswith(".msg") for n in os.listdir(tmp_path)):
                break
    thread.join()
    assert sorted(received) == list(range(count))


def test_a_waiting_consumer_is_woken_by_a_publish_not_by_its_poll(tmp_path):
    """With a poll of an hour, only the wake can bring the message in time."""
    from kombu import Exchange, Queue

    from tests.support import poll

    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "polling_interval": 3600,
               "control_folder": str(tmp_path / "control")}  # fmt: skip
    queue = Queue("q", Exchange("q"), "q")
    received = []
    consumer_conn = Connection(
        "filesystem://", transport=filesystem_transport.Transport, transport_options=options
    )
    consumer = consumer_conn.Consumer(
        queue, callbacks=[lambda body, message: (received.append(body), message.ack())]
    )
    consumer.consume()
    waiting = threading.Thread(target=lambda: consumer_conn.drain_events(timeout=60), daemon=True)
    waiting.start()
    poll(lambda: list((tmp_path / "wake").glob("*.sock")), timeout=10, what="the consumer's wake socket")
    with Connection(
        "filesystem://", transport=filesystem_transport.Transport, transport_options=options
    ) as producer:
        producer.Producer().publish({"n": 1}, exchange=queue.exchange, routing_key="q", declare=[queue])
    poll(lambda: received, timeout=10, what="the consumer to be woken")
    assert received == [{"n": 1}]
    waiting.join(timeout=10)
    consumer_conn.close()
    assert not list((tmp_path / "wake").glob("*.sock"))  # its socket goes with it


def test_a_worker_told_to_stop_leaves_its_wait_without_a_message(tmp_path, monkeypatch):
    """Celery reads its stop flag only between drains; a drain with no deadline must end on it
    (a warm shutdown's flag is 0, EX_OK, and counts)."""
    from celery.worker import state
    from kombu import Exchange, Queue

    folder = tmp_path / "queue"
    folder.mkdir()
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder), "polling_interval": 3600}
    queue = Queue("q", Exchange("q"), "q")
    conn = Connection("filesystem://", transport=filesystem_transport.Transport, transport_options=options)
    conn.Consumer(queue, callbacks=[lambda body, message: message.ack()]).consume()
    ended: list[TimeoutError] = []

    def wait() -> None:
        try:
            conn.drain_events(timeout=None)  # without the flag: until a message comes
        except TimeoutError as exc:  # what ends a drain that got no message
            ended.append(exc)

    monkeypatch.setattr(state, "should_stop", 0)
    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(timeout=30)
    conn.close()
    assert ended, "the drain did not end on the stop flag"


def test_a_socket_nobody_holds_is_cleared_by_the_next_publish(tmp_path):
    import socket

    wake = tmp_path / "wake"
    wake.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(wake / "123-dead.sock"))
    stale.close()  # its process is gone; the file stays
    filesystem_transport.wake_all(str(wake))
    assert not (wake / "123-dead.sock").exists()


def test_the_replaced_kombu_loop_is_still_the_one_that_sleeps():
    """filesystem_transport.Transport.drain_events is kombu 5.7.0's with its sleep replaced by a
    wait on the wake socket: a kombu whose loop changed must be looked at again."""
    import inspect

    import kombu
    from kombu.transport.virtual import base

    source = inspect.getsource(base.Transport.drain_events)
    assert kombu.__version__ == "5.7.0"
    assert "get(self._deliver, timeout=timeout)" in source and "sleep(polling_interval)" in source


def test_processes_binding_at_once_on_a_new_folder_never_read_an_empty_table(tmp_path):
    """A worker, beat and the API starting together bind their queues to one exchange file; none
    may find it made but not yet written (kombu's own stopped on a JSONDecodeError)."""
    for round_ in range(20):
        folder = tmp_path / str(round_)
        folder.mkdir()
        barrier, errors = threading.Barrier(8), []

        def bind(
            queue: str, folder: Path = folder, barrier: threading.Barrier = barrier, errors: list = errors
        ) -> None:
            options = {
                "data_folder_in": str(folder),
                "data_folder_out": str(folder),
                "control_folder": str(folder),
            }
            transport = filesystem_transport.Transport
            conn = Connection("filesystem://", transport=transport, transport_options=options)
            ch = conn.channel()
            ch.exchange_declare("tasker", "direct")
            barrier.wait()
            try:
                ch.queue_bind(queue, "tasker", queue)
            except Exception as exc:  # noqa: BLE001 - any failure is the test's finding
                errors.append(exc)
            finally:
                conn.release()

        # Names new each round: kombu keeps a process's bindings in state shared by its channels.
        names = [f"q{round_}-{n}" for n in range(8)]
        threads = [threading.Thread(target=bind, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        table = json.loads((folder / "tasker.exchange").read_text())
        assert sorted(q[2] for q in table) == names


def test_messages_published_within_one_millisecond_are_taken_in_the_order_published(tmp_path):
    """A resumed queue publishes its held tasks highest priority first, hundreds within a few
    milliseconds: the embedded broker must hand them out in that order."""
    ch = channel(tmp_path, filesystem_transport.Transport)
    for n in range(300):
        ch._put("q", {"n": n})
    assert [ch._get("q")["n"] for _ in range(300)] == list(range(300))
