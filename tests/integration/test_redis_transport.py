"""A worker's broker connection that dropped while it held a message closes without crashing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_py
from celery import Celery, Task
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from app.core.broker import redis_transport
from app.core.celery_app import create_celery
from config import load_config

QUEUE = Queue("tasker-transport-test", Exchange("tasker-transport-test"), "tasker-transport-test")


def holding_one_message(url: str, transport: object) -> tuple[Connection, object]:
    """A connection whose channel has taken one message and not acknowledged it, as a worker's has."""
    with Connection(url) as producer:
        producer.Producer().publish(
            {"n": 1}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE]
        )
    conn = Connection(url, transport=transport)
    channel = conn.default_channel
    received = []
    conn.Consumer(QUEUE, callbacks=[lambda body, message: received.append(body)]).consume()
    conn.drain_events(timeout=5)
    assert received == [{"n": 1}] and len(channel.qos._delivered) == 1
    return conn, channel


def detach(conn: Connection) -> None:
    """What Celery's `Connection.collect()` leaves after a connection loss: a transport without its client."""
    conn._do_close_transport()


@pytest.fixture(scope="module")
def redis_db(redis_dbs) -> str:
    return redis_dbs.claim()


@pytest.fixture
def redis_url(redis_db: str) -> Iterator[str]:
    yield redis_db
    client = redis_py.Redis.from_url(redis_db)
    client.delete("unacked", "unacked_index", QUEUE.name)
    client.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0"])
def test_taskers_celery_app_alone_uses_the_patched_transport(tmp_path, url):
    config = load_config("testing", {"CELERY_BROKER_URL": url, "TASKER_DATA_DIR": str(tmp_path)})
    celery = create_celery("t", config, ["default"], Celery, Task)
    with celery.connection_for_write() as conn:
        assert isinstance(conn.transport, redis_transport.Transport)
    with Connection(url) as conn:  # the rest of the process keeps kombu's own
        assert type(conn.transport) is kombu_redis.Transport


def test_stock_kombu_crashes_closing_a_detached_channel(redis_url):
    # If this starts passing, kombu fixed it and redis_transport can go.
    conn, _ = holding_one_message(redis_url, kombu_redis.Transport)
    detach(conn)
    with pytest.raises(AttributeError, match="hostname"):
        conn.close()


def test_closing_a_detached_channel_leaves_the_message_in_the_unacked_index(redis_url, caplog):
    conn, channel = holding_one_message(redis_url, redis_transport.Transport)
    detach(conn)
    conn.close()
    assert channel.closed
    assert "1 unacknowledged message(s) left for the recovery sweep" in caplog.text
    client = redis_py.Redis.from_url(redis_url)
    assert client.hlen("unacked") == 1  # kombu restores it after the visibility timeout
    client.close()


def test_a_live_channel_still_restores_its_messages_on_close(redis_url):
    conn, _ = holding_one_message(redis_url, redis_transport.Transport)
    conn.close()
    client = redis_py.Redis.from_url(redis_url)
    assert client.hlen("unacked") == 0
    assert client.llen(QUEUE.name) == 1  # back in its queue
    client.close()


def test_an_ack_on_a_detached_channel_is_a_connection_error_celery_survives(redis_url):
    # A task that finishes after the connection loss is acknowledged on its old channel;
    # Celery logs a connection error there (Message.ack_log_error) and goes on.
    conn, channel = holding_one_message(redis_url, redis_transport.Transport)
    (tag,) = list(channel.qos._delivered)
    errors = conn.connection_errors
    detach(conn)
    conn.close()
    with pytest.raises(errors):
        channel.basic_ack(tag)


def test_stock_kombu_crashes_acking_on_a_detached_channel(redis_url):
    # If this starts passing, kombu fixed it and the guard in _create_client can go.
    conn, channel = holding_one_message(redis_url, kombu_redis.Transport)
    (tag,) = list(channel.qos._delivered)
    detach(conn)
    with pytest.raises(AttributeError):
        conn.close()  # the first crash, before the ack ever runs
    with pytest.raises(AttributeError):
        channel.basic_ack(tag)
