"""The queries of app/models/task.py on SQLite (PostgreSQL runs them in the integration tests)."""

from __future__ import annotations

import uuid

import pytest

from app.models import task as task_model
from app.models.task import TaskStatus
from tests.support import claim


@pytest.fixture
def task_id(sqlite_db):
    task_id = uuid.uuid4()
    sqlite_db.run(lambda c: task_model.insert(c, task_id, "sum_two_numbers", {"a": 1, "b": 2}, "default"))
    return task_id


def get(db, task_id):
    return db.run(lambda c: task_model.get(c, task_id))


def test_insert_creates_a_pending_row(sqlite_db, task_id):
    row = get(sqlite_db, task_id)
    assert (row.status, row.parameters, row.attempts, row.queue) == (
        "PENDING",
        {"a": 1, "b": 2},
        0,
        "default",
    )
    assert row.result is None and row.error is None and row.created_at is not None


def test_claim_counts_attempts_and_never_starts_a_running_row(sqlite_db, task_id):
    assert sqlite_db.run(lambda c: claim(c, task_id, "w1@host")) == 1
    assert sqlite_db.run(lambda c: claim(c, task_id, "w2@host")) is None  # a duplicate message
    row = get(sqlite_db, task_id)
    assert (row.status, row.worker, row.attempts) == ("STARTED", "w1@host", 1)
    # Its worker died: the sweep puts it back to PENDING, and the next message starts it again.
    assert sqlite_db.run(lambda c: task_model.requeue(c, task_id, "STARTED", 1))
    assert sqlite_db.run(lambda c: claim(c, task_id, "w2@host")) == 2
    assert sqlite_db.run(lambda c: task_model.finish(c, task_id, TaskStatus.COMPLETED, 3)) is not None
    assert sqlite_db.run(lambda c: claim(c, task_id)) is None


def test_an_abandoned_row_fails_only_if_unchanged(sqlite_db, task_id):
    sqlite_db.run(lambda c: claim(c, task_id))
    assert not sqlite_db.run(lambda c: task_model.fail_abandoned(c, task_id, 2, "gone"))  # not that attempt
    assert sqlite_db.run(lambda c: task_model.fail_abandoned(c, task_id, 1, "gone"))
    assert (get(sqlite_db, task_id).status, get(sqlite_db, task_id).error) == ("FAILED", "gone")


@pytest.mark.parametrize("terminal", [TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED])
def test_a_terminal_row_is_never_overwritten(sqlite_db, task_id, terminal):
    assert sqlite_db.run(lambda c: task_model.finish(c, task_id, terminal, None, "first")) is not None
    assert sqlite_db.run(lambda c: task_model.finish(c, task_id, TaskStatus.COMPLETED, 9)) is None
    assert not sqlite_db.run(lambda c: task_model.mark_retrying(c, task_id, "again"))
    row = get(sqlite_db, task_id)
    assert (row.status, row.result, row.error) == (terminal, None, "first")


def test_retrying_keeps_the_reason_and_can_be_claimed(sqlite_db, task_id):
    sqlite_db.run(lambda c: claim(c, task_id))
    assert sqlite_db.run(lambda c: task_model.mark_retrying(c, task_id, "HTTP 429"))
    assert (get(sqlite_db, task_id).status, get(sqlite_db, task_id).error) == ("RETRYING", "HTTP 429")
    assert sqlite_db.run(lambda c: claim(c, task_id)) == 2


def test_delete_unstarted_leaves_claimed_rows(sqlite_db, task_id):
    sqlite_db.run(lambda c: claim(c, task_id))
    sqlite_db.run(lambda c: task_model.delete_unstarted(c, task_id))
    assert get(sqlite_db, task_id) is not None
    other = uuid.uuid4()
    sqlite_db.run(lambda c: task_model.insert(c, other, "sum_two_numbers", {}, "default"))
    sqlite_db.run(lambda c: task_model.delete_unstarted(c, other))
    assert get(sqlite_db, other) is None
