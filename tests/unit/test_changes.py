"""Waiting for a task change: an announcement wakes the waiter; a change nobody announced is read back."""

from __future__ import annotations

import threading
import uuid
from contextlib import ExitStack

import pytest

from app.core.live.changes import ChangeFeed, Watch
from app.models.task import TERMINAL


@pytest.fixture
def statuses():
    return {}


@pytest.fixture
def reads(statuses):
    calls: list[list[uuid.UUID]] = []

    def read(ids):
        calls.append(list(ids))
        return {i: statuses[i] for i in ids if i in statuses}

    read.calls = calls
    return read


def test_an_announcement_wakes_the_waiter_at_once(reads):
    watch = Watch(ChangeFeed(), reads, fallback_seconds=60)
    task_id = uuid.uuid4()
    with watch.watching(task_id, TERMINAL) as finished:
        threading.Timer(0.05, watch.announce, (task_id, "COMPLETED")).start()
        assert finished.wait(5)
    watch.close()


def test_other_statuses_and_other_tasks_do_not_wake_it(reads):
    watch = Watch(ChangeFeed(), reads, fallback_seconds=60)
    task_id = uuid.uuid4()
    with watch.watching(task_id, TERMINAL) as finished:
        watch.announce(task_id, "STARTED")
        watch.announce(uuid.uuid4(), "COMPLETED")
        assert not finished.is_set()
    watch.close()


def test_a_change_nobody_announced_is_read_back_in_one_query_for_every_waiter(reads, statuses):
    watch = Watch(ChangeFeed(), reads, fallback_seconds=0.05)
    ids = [uuid.uuid4() for _ in range(64)]
    with ExitStack() as stack:
        events = [stack.enter_context(watch.watching(i, TERMINAL)) for i in ids]
        statuses.update({i: "FAILED" for i in ids})
        assert all(event.wait(5) for event in events)
    assert max(len(call) for call in reads.calls) == 64  # one read covers every waiter
    watch.close()
