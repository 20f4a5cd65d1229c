"""Group commit: requests that arrive together are written together, each answered only after.

PostgreSQL's own group commit, applied one level up. The first request to arrive while no batch
is being written becomes the leader: it takes everything waiting (its own item included, up to
`max_items`) and writes it at once, with no wait for others to come, so a request alone on an
idle server is written as soon as it arrives. Requests that arrive while that write is under way
queue up; when it is done the leader hands the lead to the oldest of them, whose thread writes
the next batch. The window of a batch is therefore exactly the time the previous write took: no
timer, nothing to tune but the size, and no thread of its own (each item's own request thread
does the writing), so a process that stops leaves no batch half-handled: every request thread
is either writing or waiting for the thread that writes its item.

`write(items)` must settle every item it is given (`Item.settle`); whatever it raises settles
those it left with that error.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class Item:
    """One request's part of a batch: what to write, and once written, its outcome."""

    __slots__ = ("_done", "_lead", "error", "result", "value")

    def __init__(self, value: Any):
        self.value = value
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lead = False

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self._done.set()


class Batcher:
    def __init__(self, write: Callable[[Sequence[Item]], None], max_items: int):
        self.write = write
        self.max_items = max_items
        self._lock = threading.Lock()
        self._waiting: deque[Item] = deque()
        self._writing = False

    def submit(self, value: Any) -> Any:
        """Write `value` with whatever else is waiting; its result, or raise its error."""
        item = Item(value)
        with self._lock:
            self._waiting.append(item)
            lead = not self._writing
            if lead:
                self._writing = True
        if not lead:
            item._done.wait()
            lead = item._lead  # handed the lead: its batch is next
        if lead:
            self._lead()
        if item.error is not None:
            raise item.error
        return item.result

    def _lead(self) -> None:
        with self._lock:
            batch = [self._waiting.popleft() for _ in range(min(self.max_items, len(self._waiting)))]
        for item in batch:
            item._lead = False
            item._done.clear()
        try:
            self.write(batch)
        except BaseException as exc:  # noqa: BLE001 - every item must be settled, whatever happened
            for item in batch:
                if not item._done.is_set():
                    item.settle(error=exc)
        finally:
            for item in batch:
                if not item._done.is_set():
                    item.settle(error=RuntimeError("the batch writer left this item unsettled"))
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor._lead = True
                    successor._done.set()  # wakes its thread to write the next batch
                else:
                    self._writing = False
