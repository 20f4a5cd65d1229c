"""Group commit (app/core/batching.py): items written together, each answered with its own outcome."""

from __future__ import annotations

import threading
import time

import pytest

from app.core.batching import Batcher


class Recorder:
    def __init__(self, pause: float = 0.0, fail_on: object = None):
        self.batches: list[list[int]] = []
        self.pause = pause
        self.fail_on = fail_on

    def __call__(self, items) -> None:
        self.batches.append([item.value for item in items])
        time.sleep(self.pause)  # the write itself: others arrive meanwhile
        for item in items:
            if item.value == self.fail_on:
                item.settle(error=ValueError(f"refused {item.value}"))
            else:
                item.settle(result=item.value * 10)


def submit_all(batcher: Batcher, values) -> dict[int, object]:
    outcomes: dict[int, object] = {}
    start = threading.Barrier(len(values))

    def one(value: int) -> None:
        start.wait()
        try:
            outcomes[value] = batcher.submit(value)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[value] = exc

    threads = [threading.Thread(target=one, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_a_request_alone_is_written_at_once_in_a_batch_of_its_own():
    recorder = Recorder()
    batcher = Batcher(recorder, max_items=64)
    assert batcher.submit(7) == 70
    assert recorder.batches == [[7]]


def test_64_concurrent_requests_share_batches_and_each_gets_its_own_result():
    recorder = Recorder(pause=0.005)
    batcher = Batcher(recorder, max_items=16)
    outcomes = submit_all(batcher, list(range(64)))
    assert outcomes == {v: v * 10 for v in range(64)}
    written = [v for batch in recorder.batches for v in batch]
    assert sorted(written) == list(range(64))  # each exactly once
    assert len(recorder.batches) < 64 and max(len(b) for b in recorder.batches) <= 16


def test_one_refused_item_fails_only_its_own_request():
    batcher = Batcher(Recorder(pause=0.005, fail_on=5), max_items=64)
    outcomes = submit_all(batcher, list(range(20)))
    assert isinstance(outcomes.pop(5), ValueError)
    assert outcomes == {v: v * 10 for v in range(20) if v != 5}


def test_a_writer_that_raises_fails_its_batch_and_the_next_batch_still_runs():
    calls = []

    def write(items) -> None:
        calls.append(len(items))
        if len(calls) == 1:
            raise ConnectionError("broker gone")
        for item in items:
            item.settle(result="ok")

    batcher = Batcher(write, max_items=64)
    with pytest.raises(ConnectionError):
        batcher.submit(1)
    assert batcher.submit(2) == "ok"  # the lead was given back: nothing is stuck


def test_an_item_the_writer_forgets_is_failed_not_left_waiting():
    batcher = Batcher(lambda items: None, max_items=8)
    with pytest.raises(RuntimeError, match="unsettled"):
        batcher.submit(1)
