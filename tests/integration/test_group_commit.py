"""Group commit on the submit path (SUBMIT_BATCH_MAX): concurrent submits share one INSERT and
one publish, and each still gets exactly one row and one message, with its own outcome."""

from __future__ import annotations

import gc
import shutil
import threading
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core import metrics
from app.core.batching import Item
from app.core.broker import Message
from app.core.task_manager import NewTask
from app.models import task as task_model
from app.models.migrate import upgrade
from tests.conftest import build_app, new_database, rabbitmqctl
from tests.support import closed_port, poll

SUM = {"name": "sum", "parameters": {"a": 1, "b": 2}}


def submit_concurrently(app, count: int, body=SUM) -> Counter:
    """`count` threads submit at once; the answers by status, and the ids of the 202s."""
    answers: Counter = Counter()
    accepted: list[str] = []
    start = threading.Barrier(count)

    def one() -> None:
        client = app.test_client()
        start.wait()
        response = client.post("/api/v1/tasks", json=body)
        answers[response.status_code] += 1
        if response.status_code == 202:
            accepted.append(response.get_json()["id"])

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    answers["accepted"] = accepted  # type: ignore[assignment]
    return answers


def messages_in(app, queue: str = "default") -> list[str]:
    """The task ids of every message waiting in `queue` (taken off it; no worker reads this broker)."""
    ids = []
    with app.extensions["celery"].connection_for_read() as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            ids.append(message.headers["id"])
        channel.close()
    return ids


def row_ids(db) -> list[str]:
    return [str(r.id) for r in db.run(lambda c: list(c.execute(sa.select(task_model.tasks.c.id))))]


def batch_sizes() -> tuple[float, float]:
    """tasker_submit_batch_size so far in this process: (batches written, rows in them)."""
    recorded = metrics.recorded()
    count = recorded.get_sample_value("tasker_submit_batch_size_count") or 0.0
    return count, recorded.get_sample_value("tasker_submit_batch_size_sum") or 0.0


@contextmanager
def fresh_app(stack, tmp_path, **settings):
    """The stack's app with a broker no worker reads and a database of its own (rows counted exactly)."""
    env = stack.env | stack.new_broker() | settings
    with ExitStack() as cleanup:
        if stack.embedded:
            url = f"sqlite:///{tmp_path / 'batch.db'}"
            engine = sa.create_engine(url)
            upgrade(engine)
            engine.dispose()
        else:
            url = cleanup.enter_context(new_database("tasker_batch"))
        app = build_app(env | {"DATABASE_URL": url})
        cleanup.callback(app.extensions["tasker"].db.dispose)
        yield app


@pytest.mark.parametrize("batch_max", ["64", "1"])
def test_64_concurrent_submits_make_one_row_and_one_message_each(stack, tmp_path, batch_max):
    with fresh_app(stack, tmp_path, SUBMIT_BATCH_MAX=batch_max) as app:
        before = batch_sizes()
        answers = submit_concurrently(app, 64)
        accepted = answers.pop("accepted")
        assert answers == Counter({202: 64})
        assert sorted(row_ids(app.extensions["tasker"].db)) == sorted(accepted)
        assert sorted(messages_in(app)) == sorted(accepted)  # one message per row, none lost or doubled
        batcher = app.extensions["tasker"].tasks.batcher
        if batch_max == "1":
            assert batcher is None  # the path of old: one INSERT and one publish per request
        else:
            batches, items = (after - was for after, was in zip(batch_sizes(), before, strict=True))
            assert items == 64 and batches < 64  # they were written together


def test_a_row_the_database_refuses_fails_only_its_own_request(stack, tmp_path):
    """A constraint failure in the middle of a batch (a duplicate id, planted): that request gets
    the error, the other rows of the batch are written and published, each under its own tenant."""
    app = build_app(stack.env | stack.new_broker())
    tasks = app.extensions["tasker"].tasks
    task_type = tasks.registry.resolve("sum")
    existing = uuid.uuid4()
    app.extensions["tasker"].db.run(
        lambda c: task_model.insert(c, existing, "sum_two_numbers", {"a": 0, "b": 0}, "default")
    )
    ids = [uuid.uuid4(), existing, uuid.uuid4()]
    owners = ["acme", "globex", "initech"]
    items = [
        Item(NewTask(task_type, {"id": i, "name": "sum_two_numbers", "parameters": {"a": 1, "b": n},
                                 "queue": "default", "priority": 5, "owner": owner}, {}))
        for n, (i, owner) in enumerate(zip(ids, owners, strict=True))
    ]  # fmt: skip
    tasks._write_batch(items)
    assert items[0].error is None and items[2].error is None
    assert isinstance(items[1].error, sa.exc.IntegrityError)
    assert sorted(messages_in(app)) == sorted([str(ids[0]), str(ids[2])])
    written = app.extensions["tasker"].db.run(
        lambda c: dict(
            c.execute(
                sa.select(task_model.tasks.c.id, task_model.tasks.c.owner).where(
                    task_model.tasks.c.id.in_(ids)
                )
            ).all()
        )
    )
    assert written == {ids[0]: "acme", existing: "default", ids[2]: "initech"}  # none took another's
    app.extensions["tasker"].db.dispose()


def test_messages_the_broker_refuses_mid_batch_remove_exactly_their_rows(stack, tmp_path):
    """RabbitMQ takes 10 messages and refuses the rest (max-length with reject-publish): of 30
    concurrent submits, the 10 it took are 202s with rows, the others 503s without."""
    if stack.name != "rabbit":
        pytest.skip("a broker that takes some of a batch and refuses the rest: RabbitMQ's queue limit")
    with fresh_app(stack, tmp_path) as app:
        vhost = app.config["CELERY_BROKER_URL"].rsplit("/", 1)[1]
        rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "ten", "^default$",
                    '{"max-length": 10, "overflow": "reject-publish"}')  # fmt: skip
        answers = submit_concurrently(app, 30)
        accepted = answers.pop("accepted")
        assert answers == Counter({202: 10, 503: 20})
        assert sorted(row_ids(app.extensions["tasker"].db)) == sorted(accepted)
        assert sorted(messages_in(app)) == sorted(accepted)
        app.extensions["tasker"].db.dispose()


def test_a_broker_that_is_gone_fails_the_whole_batch_and_keeps_no_row(stack, tmp_path):
    """Every message of the batch refused (no broker to take them): each request is a 503 naming
    the broker, and none of their rows stays."""
    down = {}
    if not stack.embedded:
        kind = "amqp://guest:guest@" if stack.name == "rabbit" else "redis://"
        down = {"CELERY_BROKER_URL": f"{kind}127.0.0.1:{closed_port()}/0"}
    with fresh_app(stack, tmp_path, **down) as app:
        if stack.embedded:  # the broker's folder is gone: a file stands where it was
            queue = Path(app.config["DATA_DIR"]) / "broker" / "queue"
            shutil.rmtree(queue)
            queue.write_text("not a folder")
        answers = submit_concurrently(app, 16)
        assert answers.pop("accepted") == [] and answers == Counter({503: 16})
        assert row_ids(app.extensions["tasker"].db) == []


def connections_to(vhost: str) -> list[str]:
    """The names of the connections open to `vhost` (list_connections has no vhost filter)."""
    lines = rabbitmqctl("list_connections", "vhost", "name").splitlines()
    return [line.split("\t", 1)[1] for line in lines if line.split("\t", 1)[0] == vhost]


def batch_of(app, count: int) -> list[Message]:
    """`count` sum messages as the batch writer hands them to enqueue_many."""
    task_type = app.extensions["tasker"].tasks.registry.resolve("sum")
    return [Message(task_type, uuid.uuid4(), {"a": 1, "b": n}) for n in range(count)]


def test_rabbitmq_confirms_a_batch_with_one_wait_and_each_message_on_its_own(stack, tmp_path, mocker):
    """The batch is published, then its confirms are awaited once; RabbitMQ's acks and nacks
    (here: a queue that takes 10 and refuses the rest) reach exactly their own messages. Also
    the canary of amqp_confirms.py: were py-amqp's numbering or ack events to change, the acks
    would not be matched and every message would time out."""
    if stack.name != "rabbit":
        pytest.skip("publisher confirms are RabbitMQ's")
    with fresh_app(stack, tmp_path) as app:
        broker = app.extensions["tasker"].tasks.broker
        vhost = app.config["CELERY_BROKER_URL"].rsplit("/", 1)[1]
        rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "ten", "^default$",
                    '{"max-length": 10, "overflow": "reject-publish"}')  # fmt: skip
        messages = batch_of(app, 30)
        sends = mocker.spy(broker.confirms, "_send_and_wait")
        outcomes = broker.enqueue_many(messages)
        assert sends.call_count == 1  # sent together, then one wait for every confirm
        assert outcomes[:10] == [None] * 10
        assert all("nack" in outcome.details["reason"] for outcome in outcomes[10:])
        assert messages_in(app) == [str(m.task_id) for m in messages[:10]]


def test_rabbitmq_closing_the_connection_between_batches_loses_no_message(stack, tmp_path):
    """RabbitMQ closes the batch publisher's connection (as on a restart or a failover): the next
    batch reconnects and is confirmed in full."""
    if stack.name != "rabbit":
        pytest.skip("a RabbitMQ connection closed by the broker")
    with fresh_app(stack, tmp_path) as app:
        broker = app.extensions["tasker"].tasks.broker
        vhost = app.config["CELERY_BROKER_URL"].rsplit("/", 1)[1]
        first, second = batch_of(app, 5), batch_of(app, 5)
        assert broker.enqueue_many(first) == [None] * 5
        connections = connections_to(vhost)
        assert len(connections) == 1  # the batch publisher's
        rabbitmqctl("close_all_connections", "--vhost", vhost, "closed by the test")
        assert broker.enqueue_many(second) == [None] * 5
        assert connections_to(vhost) not in ([], connections)  # a new one
        assert sorted(messages_in(app)) == sorted(str(m.task_id) for m in first + second)


def test_rabbitmq_a_batch_publishers_connection_closes_when_its_app_goes(stack, tmp_path):
    """Each app's batch publisher has a connection of its own; it is closed once the app is
    gone, not kept until the process ends (a test process builds hundreds of apps)."""
    if stack.name != "rabbit":
        pytest.skip("the batch publisher's own RabbitMQ connection")
    env = stack.env | stack.new_broker()
    vhost = env["CELERY_BROKER_URL"].rsplit("/", 1)[1]
    for _ in range(2):
        app = build_app(env)
        assert app.extensions["tasker"].tasks.broker.enqueue_many(batch_of(app, 1)) == [None]
        app.extensions["tasker"].db.dispose()
        del app
        gc.collect()
    # The last app may live on as Celery's default app; the one before it is gone.
    poll(lambda: len(connections_to(vhost)) <= 1, 10, what="the connections of gone apps to close")
