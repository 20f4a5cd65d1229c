"""The embedded broker's messages appear whole or not at all (a consumer never reads a half-written one)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from celery import Celery, Task
from kombu import Connection
from kombu.transport import filesystem

from app.core import filesystem_transport
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
