"""The v1 workflow resource: the workflow, and each step's state (a map step's items counted)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.core.resources import utc_iso
from app.core.workflows import maps
from app.models import task as task_model
from app.models.task import TaskStatus


def workflow_resource(workflow: Any, steps: Mapping[str, Any] | None) -> dict[str, Any]:
    """The v1 workflow resource; with `steps`, each step's state."""
    resource = {
        "id": str(workflow.id), "name": workflow.name, "status": workflow.status, "input": workflow.input,
        "on_failure": workflow.on_failure, "error": workflow.error, "owner": workflow.owner,
        "created_at": _time(workflow.created_at), "updated_at": _time(workflow.updated_at),
        "completed_at": _time(workflow.completed_at), "webhook": getattr(workflow, "webhook", None),
    }  # fmt: skip
    if steps is not None:
        items: dict[str, list[Any]] = {}
        for key, row in steps.items():
            if (item := maps.parse_item(key)) is not None:
                items.setdefault(item[0], []).append(row)
        resource["steps"] = [
            _step_resource(spec, steps.get(spec["id"]), steps, items.get(spec["id"], []))
            for spec in workflow.steps
        ]
    return resource


def _step_resource(
    spec: Mapping[str, Any], row: Any, rows: Mapping[str, Any], items: list[Any]
) -> dict[str, Any]:
    """One step's state; a map step's with its items counted (`map`)."""
    waiting = [p for p in spec["after"] if p in rows and rows[p].status not in task_model.TERMINAL]
    if items and row is not None and row.status == TaskStatus.WAITING:
        waiting = ["its items"]
    resource = {
        "id": spec["id"], "task": spec["task"], "after": spec["after"], "join": spec["join"],
        "task_id": str(row.id) if row is not None else None,
        "status": row.status if row is not None else None,
        "attempts": row.attempts if row is not None else 0, "result": row.result if row is not None else None,
        "error": row.error if row is not None else None,
        "waiting_for": waiting if row is not None and row.status == TaskStatus.WAITING else [],
    }  # fmt: skip
    if "map" in spec:
        resource["map"] = {**spec["map"], "items": maps.summary(items)}
    return resource


def _time(value: Any) -> str | None:
    return None if value is None else utc_iso(value)
