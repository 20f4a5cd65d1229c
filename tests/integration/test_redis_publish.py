"""The direct Redis publish writes exactly what Celery's send_task writes, where send_task writes it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_py
from celery import Celery, Task

from app.core import logs
from app.core.broker import Broker, Message, broker_class, headers
from app.core.celery_app import create_celery
from app.core.errors import BrokerUnavailable
from app.core.ports import MAX_PRIORITY
from config import load_config
from tests.support import REGISTRY, free_port


@pytest.fixture(scope="module")
def broker_url(redis_dbs) -> str:
    return redis_dbs.claim()


@pytest.fixture
def broker(broker_url: str, redis_dbs) -> Iterator[redis_py.Redis]:
    client = redis_py.Redis.from_url(broker_url)
    redis_dbs.empty(broker_url)
    yield client
    redis_dbs.empty(broker_url)
    client.close()


def broker_for(url: str, tmp_path: Any, **settings: str) -> Broker:
    config = load_config("testing", {"CELERY_BROKER_URL": url, "TASKER_DATA_DIR": str(tmp_path), **settings})
    celery = create_celery("tasker", config, REGISTRY.queues, Celery, Task)
    return broker_class(config)(celery)


def only_message(client: redis_py.Redis) -> tuple[str, dict[str, Any]]:
    """The one message in the broker's lists, and the list it is in; the list is emptied."""
    keys = [k.decode() for k in client.keys("*") if client.type(k) == b"list"]
    assert len(keys) == 1, keys
    raw = client.lrange(keys[0], 0, -1)
    assert len(raw) == 1
    client.delete(keys[0])
    return keys[0], json.loads(raw[0])


@pytest.mark.parametrize(
    ("name", "parameters", "priority", "request_id"),
    [
        ("sum_two_numbers", {"a": 1, "b": 2.5}, 5, None),
        ("query_chatgpt", {"prompt": 'Say "hi" ✓'}, 9, "req-42"),
        ("find_longest_consecutive_letters", {"text": "aabbbc"}, 0, "0b6f3c1e9d2a4f5b8c7d6e5f4a3b2c1d"),
        ("process_data", {"steps": 3, "step_seconds": 0.1}, 7, None),
    ],
)
def test_message_and_list_are_those_of_send_task(
    broker, broker_url, tmp_path, name, parameters, priority, request_id
):
    broker_ = broker_for(broker_url, tmp_path)
    assert broker_.writer is not None
    task_type = REGISTRY.resolve(name)
    task_id = uuid.uuid4()

    # A request's id (bound to its log context by the API) travels in the message's headers.
    with logs.bound(request_id=request_id):
        broker_.send_task(Message(task_type, task_id, parameters, priority, headers=headers()))
        celery_key, celery_message = only_message(broker)
        broker_.enqueue(Message(task_type, task_id, parameters, priority, headers=headers()))
        direct_key, direct_message = only_message(broker)

    assert direct_key == celery_key
    # A delivery tag is a fresh uuid per publish; everything else must be equal, key for key.
    tags = [m["properties"].pop("delivery_tag") for m in (celery_message, direct_message)]
    assert all(uuid.UUID(tag) for tag in tags)
    assert direct_message == celery_message
    assert direct_message["headers"]["id"] == str(task_id)
    assert direct_message["headers"].get("request_id") == request_id


def test_priorities_land_on_the_lists_a_worker_reads_first(broker, broker_url, tmp_path):
    broker_ = broker_for(broker_url, tmp_path)
    task_type = REGISTRY.resolve("sum_two_numbers")
    keys = {}
    for priority in (9, 5, 0):
        broker_.enqueue(Message(task_type, uuid.uuid4(), {"a": 1, "b": 2}, priority))
        keys[priority], _ = only_message(broker)
    # kombu serves `default` (step 0) first, then default:1 ... default:9.
    assert keys == {9: "default", 5: "default:4", 0: "default:9"}


@pytest.mark.parametrize("priorities", [[5, 5, 5], [9, 5, 9, 0, 5]], ids=["one list", "three lists"])
def test_a_batch_lands_on_its_lists_in_order(broker, broker_url, tmp_path, priorities):
    """enqueue_many: one LPUSH per list (MULTI/EXEC when there are several); a worker reads each
    list's messages in the order they were given, exactly once each."""
    broker_ = broker_for(broker_url, tmp_path)
    task_type = REGISTRY.resolve("sum_two_numbers")
    messages = [Message(task_type, uuid.uuid4(), {"a": n, "b": 2}, p) for n, p in enumerate(priorities)]
    assert broker_.enqueue_many(messages) == [None] * len(messages)
    for priority in set(priorities):
        key = broker_.writer.key("default", MAX_PRIORITY - priority)
        read = [json.loads(raw)["headers"]["id"] for raw in reversed(broker.lrange(key, 0, -1))]
        assert read == [str(m.task_id) for m in messages if m.priority == priority]  # RPOP: oldest first
    assert sum(broker.llen(key) for key in broker.keys("default*")) == len(messages)


def test_a_long_argument_repr_is_cut_like_celery_cuts_it(broker, broker_url, tmp_path):
    prompt = "x" * 5000
    broker_for(broker_url, tmp_path).enqueue(
        Message(REGISTRY.resolve("query_chatgpt"), uuid.uuid4(), {"prompt": prompt})
    )
    _, message = only_message(broker)
    assert len(message["headers"]["kwargsrepr"]) == 1024
    assert message["headers"]["kwargsrepr"].endswith("...")


def test_redis_down_is_a_broker_error(tmp_path):
    broker_ = broker_for(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    with pytest.raises(BrokerUnavailable) as raised:
        broker_.enqueue(Message(REGISTRY.resolve("sum"), uuid.uuid4(), {"a": 1, "b": 2}))
    assert "Connection refused" in raised.value.details["reason"]


def test_other_brokers_keep_send_task(tmp_path):
    assert broker_for("rediss://127.0.0.1:1/0?ssl_cert_reqs=required", tmp_path).writer is None
    assert not hasattr(broker_for(f"filesystem://{tmp_path}", tmp_path), "writer")


def test_rabbitmq_batches_confirm_once_unless_sent_events_share_the_channel(tmp_path):
    """A sent event is published on the batch's channel and would shift the confirms' numbering
    (amqp_confirms.py): with them on, each message is confirmed on its own, as before."""
    url = "amqp://guest:guest@127.0.0.1:1/x"  # nothing is published: no connection is opened
    assert broker_for(url, tmp_path).confirms is not None
    assert broker_for(url, tmp_path, CELERY_TASK_SENT_EVENT="true").confirms is None
