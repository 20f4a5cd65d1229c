"""What resuming an ended workflow runs again: the steps and map items that FAILED or were
CANCELLED (or those the client names), and every step after them; every other COMPLETED result is
kept. A map whose items were partly done runs only those items again, under a new row of its own.

Each step run again is a new task row with `retry_of` naming the row it replaces; the old row
keeps its outcome and its workflow_id, and gives up its step key (`step` NULL), so the key names
one row at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Row

from app.core.errors import Conflict, InvalidInput
from app.core.workflows import maps
from app.models.task import TaskStatus

AGAIN = (TaskStatus.FAILED, TaskStatus.CANCELLED)


@dataclass
class Plan:
    fresh: list[str] = field(default_factory=list)  # steps run again whole, parents first
    items: dict[str, list[Row]] = field(default_factory=dict)  # map -> its item rows run again
    retired: list[Row] = field(default_factory=list)  # the rows they replace


def plan(specs: Sequence[Mapping[str, Any]], rows: Mapping[str, Row], chosen: Iterable[str] | None) -> Plan:
    """The plan for `chosen` (step ids or item keys; None: whatever FAILED or was CANCELLED)."""
    names = _chosen(specs, rows, chosen)
    items: dict[str, list[str]] = {}
    fresh: set[str] = set()
    for key in names:
        item = maps.parse_item(key)
        if item is not None:
            items.setdefault(item[0], []).append(key)
        elif (again := _items_again(key, rows)) is not None:
            items.setdefault(key, []).extend(again)
        else:
            fresh.add(key)
    fresh |= _descendants(specs, fresh | set(items))
    result = Plan()
    result.fresh = [spec["id"] for spec in specs if spec["id"] in fresh]  # parents first
    for key in fresh:
        result.retired += [rows[key]] if key in rows else []
        result.retired += _items(key, rows)
    for key, keys in items.items():
        if key in fresh:
            continue
        result.items[key] = maps.in_order([rows[k] for k in set(keys)])
        result.retired += [rows[key], *result.items[key]]
    return result


def _chosen(
    specs: Sequence[Mapping[str, Any]], rows: Mapping[str, Row], chosen: Iterable[str] | None
) -> list[str]:
    if chosen is None:
        names = [key for key, row in rows.items() if row.status in AGAIN]
        if not names:
            raise Conflict(
                "Nothing to resume: no step failed or was cancelled. Name the steps to run again in `steps`.",
                {"steps": ["No step failed or was cancelled."]},
            )
        return names
    names = list(chosen)
    known = {spec["id"] for spec in specs}
    for index, key in enumerate(names):
        item = maps.parse_item(key)
        if key not in rows or (item is None and key not in known):
            message = f"No step or map item is called {key!r}."
            raise InvalidInput(f"steps.{index}: {message}", {f"steps.{index}": [message]})
    return names


def _items_again(key: str, rows: Mapping[str, Row]) -> list[str] | None:
    """A map's items to run again when the map itself is chosen: those that failed or were
    cancelled, if it has items and some of them did; None to run the map again whole."""
    again = [row.step for row in _items(key, rows) if row.status in AGAIN]
    return again or None


def _items(key: str, rows: Mapping[str, Row]) -> list[Row]:
    return [row for k, row in rows.items() if (item := maps.parse_item(k)) is not None and item[0] == key]


def _descendants(specs: Sequence[Mapping[str, Any]], keys: set[str]) -> set[str]:
    """Every step after one of `keys`, directly or not (specs come parents first)."""
    found: set[str] = set()
    for spec in specs:
        if any(parent in keys or parent in found for parent in spec["after"]):
            found.add(spec["id"])
    return found
