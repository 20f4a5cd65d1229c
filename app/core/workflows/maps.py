"""A map step: one task per item of an array known only at run time (`resize[0]`, `resize[1]`, ...).

The step's own row (its head) is released like any step's; its release expands the map: the
array its `over` names is checked, each item's parameters resolved (`$item`) and checked against
the type's schema, and every item's row written in one multi-row INSERT, in the transaction of
the terminal write that released the head. The unique (workflow_id, step) index makes a second
expansion impossible. The head then waits for its items (`waiting_parents` counts them) and ends
when the last one does, its result the array of their results in order.

`max_parallel` is a sliding window kept by the same counting: item i beyond the window waits for
i - max_parallel + 1 of its siblings to end, and every item's ending lowers each waiting sibling's
count by one; the one that reaches 0 is released.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Row

from app.core.workflows import refs
from app.models.task import TaskStatus

_ITEM = re.compile(r"^(?P<step>[A-Za-z][A-Za-z0-9_-]*)\[(?P<index>\d+)\]$")


def item_key(step: str, index: int) -> str:
    return f"{step}[{index}]"


def parse_item(key: str) -> tuple[str, int] | None:
    """("resize", 17) for "resize[17]"; None for a step's own key."""
    found = _ITEM.match(key)
    return None if found is None else (found["step"], int(found["index"]))


def in_order(items: Sequence[Row]) -> list[Row]:
    """A map's item rows by index (their keys sort as strings: resize[10] before resize[2])."""
    return sorted(items, key=lambda row: parse_item(row.step)[1])  # type: ignore[index]


def over_problem(items: Any, pointer: str, max_items: int) -> str | None:
    """Why `items` cannot be mapped over, or None."""
    if not isinstance(items, list):
        return f"map over {pointer or 'the whole value'}: expected an array, got {refs.type_name(items)}"
    if len(items) > max_items:
        return f"map over {pointer}: {len(items)} items, more than max_items ({max_items})"
    return None


def item_rows(head: Row, parameters: Sequence[Any], max_parallel: int | None) -> list[dict[str, Any]]:
    """The rows of a map's items: the first `max_parallel` PENDING, the rest WAITING their turn."""
    window = max_parallel or len(parameters)
    return [_item_row(head, index, params, window) for index, params in enumerate(parameters)]


def _item_row(head: Row, index: int, parameters: Any, window: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(), "name": head.name, "parameters": parameters,
        "status": TaskStatus.PENDING if index < window else TaskStatus.WAITING,
        "queue": head.queue, "priority": head.priority, "owner": head.owner,
        "timeout_seconds": head.timeout_seconds, "workflow_id": head.workflow_id,
        "step": item_key(head.step, index),
        "waiting_parents": None if index < window else index - window + 1,
    }  # fmt: skip


def again(row: Row, parameters: Any, status: TaskStatus, waiting: int | None) -> dict[str, Any]:
    """A new row for a step run again on resume, in place of `row`."""
    return {
        "id": uuid.uuid4(), "name": row.name, "parameters": parameters if parameters is not None else {},
        "status": status, "queue": row.queue, "priority": row.priority, "owner": row.owner,
        "timeout_seconds": row.timeout_seconds, "workflow_id": row.workflow_id, "step": row.step,
        "waiting_parents": waiting, "retry_of": row.id,
    }  # fmt: skip


def items_again(items: Sequence[Row], parameters: dict[Any, Any], window: int) -> list[dict[str, Any]]:
    """New rows for a map's items run again on resume (their parameters as resolved before): the
    first `window` PENDING, the rest WAITING their turn."""
    rows = []
    for position, row in enumerate(items):
        if position < window:
            rows.append(again(row, parameters[row.id], TaskStatus.PENDING, None))
        else:
            rows.append(again(row, parameters[row.id], TaskStatus.WAITING, position - window + 1))
    return rows


def outcome(items: Sequence[Row]) -> tuple[TaskStatus, list[Any], str | None]:
    """A map's ending once its items have all ended: its status, its result (each item's result
    in order, None where one did not complete) and its error."""
    results = [row.result if row.status == TaskStatus.COMPLETED else None for row in items]
    for status, verb in ((TaskStatus.FAILED, "failed"), (TaskStatus.CANCELLED, "were cancelled")):
        stopped = [row for row in items if row.status == status]
        if stopped:
            first = stopped[0]
            return (
                status,
                results,
                f"{len(stopped)} of {len(items)} items {verb}; {first.step}: {first.error}",
            )
    return TaskStatus.COMPLETED, results, None


def summary(items: Sequence[Row]) -> dict[str, int]:
    """What a workflow's page says of a map's items."""
    counts = {"total": len(items), "completed": 0, "failed": 0, "cancelled": 0, "running": 0, "waiting": 0}
    for row in items:
        if row.status == TaskStatus.COMPLETED:
            counts["completed"] += 1
        elif row.status == TaskStatus.FAILED:
            counts["failed"] += 1
        elif row.status == TaskStatus.CANCELLED:
            counts["cancelled"] += 1
        elif row.status == TaskStatus.WAITING:
            counts["waiting"] += 1
        else:
            counts["running"] += 1  # PENDING, STARTED, RETRYING: given to the workers
    return counts
