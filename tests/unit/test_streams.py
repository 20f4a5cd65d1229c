"""The stream hub: one read per burst of changes whatever the number of streams, the newest state
per task, revisions never sent twice, and the read-back for single-task streams."""

from __future__ import annotations

import threading
import uuid
from contextlib import ExitStack
from types import SimpleNamespace

from app.core.live.changes import ChangeFeed, Watch
from app.core.live.streams import Change, StreamHub, Subscription, close_all


def row(task_id: uuid.UUID, revision: int, status: str = "STARTED", owner: str = "ann") -> SimpleNamespace:
    return SimpleNamespace(id=task_id, revision=revision, status=status, owner=owner, name="sum_two_numbers")


def change(*args: object, **kwargs: object) -> Change:
    return Change(row(*args, **kwargs))


class Table:
    """Rows by id, and every read made of them."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, SimpleNamespace] = {}
        self.reads: list[list[uuid.UUID]] = []
        self.read = threading.Event()

    def read_rows(self, ids: list[uuid.UUID]) -> list[SimpleNamespace]:
        self.reads.append(list(ids))
        self.read.set()
        return [self.rows[i] for i in ids if i in self.rows]


def hub(table: Table, fallback: float = 60.0) -> tuple[Watch, StreamHub]:
    watch = Watch(ChangeFeed(), lambda ids: {}, fallback)
    return watch, StreamHub(watch, table.read_rows, fallback)


def test_a_change_is_read_once_for_every_stream_that_wants_it():
    table = Table()
    watch, streams = hub(table)
    task = uuid.uuid4()
    table.rows[task] = row(task, 2)
    subscriptions = [Subscription(lambda r: True) for _ in range(50)]
    with ExitStack() as open_streams:
        for subscription in subscriptions:
            open_streams.enter_context(streams.subscribe(subscription))
        watch.announce(task, "STARTED")
        received = [s.next(5) for s in subscriptions]
    assert all(rows and rows[0].revision == 2 for rows in received)
    assert len({id(rows[0]) for rows in received}) == 1  # one Change, rendered once for all
    assert table.reads == [[task]]  # one query for fifty streams
    watch.close()


def test_a_slow_stream_gets_the_newest_state_once_and_no_revision_twice():
    subscription = Subscription(lambda r: True)
    task = uuid.uuid4()
    for revision in (3, 4, 5):
        subscription.offer(change(task, revision))
    subscription.offer(change(task, 4))  # an older read arriving late
    assert [r.revision for r in subscription.next(0)] == [5]
    subscription.offer(change(task, 5))
    assert subscription.next(0) == []


def test_a_single_task_stream_skips_what_the_client_has():
    task = uuid.uuid4()
    subscription = Subscription(lambda r: r.id == task, task, after=7)
    subscription.offer(change(task, 7))
    subscription.offer(change(uuid.uuid4(), 9))
    assert subscription.next(0) == []
    subscription.offer(change(task, 8, "COMPLETED"))
    assert [r.status for r in subscription.next(0)] == ["COMPLETED"]


def test_the_read_back_finds_a_change_nobody_announced():
    table = Table()
    watch, streams = hub(table, fallback=0.05)
    task = uuid.uuid4()
    subscription = Subscription(lambda r: r.id == task, task, after=1)
    with streams.subscribe(subscription):
        table.rows[task] = row(task, 2, "COMPLETED")  # written, never announced
        rows = subscription.next(5)
    assert [r.status for r in rows] == ["COMPLETED"]
    watch.close()


def test_close_all_ends_every_open_stream():
    table = Table()
    watch, streams = hub(table)
    subscription = Subscription(lambda r: True)
    with streams.subscribe(subscription):
        close_all()
        assert subscription.next(5) is None
    watch.close()


def test_a_stream_whose_reader_falls_too_far_behind_is_closed_saying_why():
    """A reader that never reads: what waits for it stays under its backlog (the newest state of
    each task counts once), then the stream is closed, marked as behind, holding nothing."""
    subscription = Subscription(lambda r: True, backlog_bytes=10_000)
    first = uuid.uuid4()
    for revision in range(1, 50):  # one task changing: only its newest state waits
        subscription.offer(SimpleNamespace(**vars(row(first, revision)), data="x" * 3000))
    assert not subscription.closed and len(subscription.next(0)) == 1
    for _ in range(3):
        subscription.offer(SimpleNamespace(**vars(row(uuid.uuid4(), 1)), data="x" * 3000))
    assert not subscription.closed
    subscription.offer(SimpleNamespace(**vars(row(uuid.uuid4(), 1)), data="x" * 3000))
    assert subscription.closed and subscription.behind
    assert subscription.next(0) is None and subscription._pending == {}
