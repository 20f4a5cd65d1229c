from __future__ import annotations

import uuid

import pytest

from app.core.endings import Endings
from app.core.errors import BrokerUnavailable, InvalidInput, TaskNotFound, UnknownTaskType
from app.core.live.changes import ChangeFeed, Watch
from app.core.monitor import Monitor
from app.core.task_manager import SubmitRequest, TaskManager
from app.models import task as task_model
from app.models.task import TaskStatus
from tests.support import REGISTRY


@pytest.fixture
def broker(mocker):
    return mocker.Mock(spec=["enqueue", "ping", "revoke"])


@pytest.fixture
def manager(sqlite_db, cache, broker):
    watch = Watch(ChangeFeed(), lambda ids: sqlite_db.run(lambda c: task_model.statuses(c, list(ids))))
    yield TaskManager(Endings(sqlite_db, cache, watch), REGISTRY, broker)
    watch.close()


def test_submit_stores_then_publishes_with_the_row_id(manager, sqlite_db, broker):
    task_id = manager.submit(SubmitRequest("sum", {"a": 1, "b": 2})).id
    message = broker.enqueue.call_args.args[0]
    assert (message.task_type.name, message.task_id, message.parameters, message.priority) == (
        "sum_two_numbers",
        task_id,
        {"a": 1, "b": 2},
        5,
    )
    row = sqlite_db.run(lambda c: task_model.get(c, task_id))
    assert row.status == "PENDING" and row.name == "sum_two_numbers"


def test_a_failed_publish_leaves_no_row(manager, sqlite_db, broker):
    broker.enqueue.side_effect = BrokerUnavailable("connection refused")
    with pytest.raises(BrokerUnavailable):
        manager.submit(SubmitRequest("sum", {"a": 1, "b": 2}))
    count = sqlite_db.run(lambda c: c.execute(task_model.tasks.select()).all())
    assert count == []


def test_invalid_input_is_rejected_before_anything_is_stored(manager, broker):
    with pytest.raises(UnknownTaskType):
        manager.submit(SubmitRequest("nope", {}))
    with pytest.raises(InvalidInput):
        manager.submit(SubmitRequest("sum", {"a": "1", "b": 2}))
    broker.enqueue.assert_not_called()


def test_get_output_caches_only_terminal_outputs(manager, sqlite_db, cache):
    task_id = manager.submit(SubmitRequest("sum", {"a": 1, "b": 2})).id
    assert manager.get_output(task_id) == {"status": "PENDING", "result": None, "error": None}
    assert cache.get_output(task_id, "default") is None
    sqlite_db.run(lambda c: task_model.finish(c, task_id, TaskStatus.COMPLETED, 3))
    assert manager.get_output(task_id)["result"] == 3
    assert cache.get_output(task_id, "default") == {"status": "COMPLETED", "result": 3, "error": None}


def test_unknown_task_is_not_found(manager):
    with pytest.raises(TaskNotFound):
        manager.get_output(uuid.uuid4())


def test_check_dependencies_reports_each_one(sqlite_db, cache, mocker):
    probe = mocker.Mock(spec=["ping", "is_redis"])
    probe.ping.side_effect = BrokerUnavailable("Error 111 connecting")
    checks = Monitor(sqlite_db, cache, probe, REGISTRY).check_dependencies()
    assert checks == {"database": "ok", "broker": "Error 111 connecting", "cache": "ok"}
