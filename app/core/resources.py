"""How a task row is shown to clients, and the opaque list cursor."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from app.core.errors import InvalidInput


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def task_output(
    status: str, result: Any, error: str | None, progress: int | None = None, message: str | None = None
) -> dict[str, Any]:
    """The reference's `task_output` object; `progress` appears once the task has reported some."""
    output = {"status": status, "result": result, "error": error}
    if progress is not None:
        output |= {"progress": progress, "progress_message": message}
    return output


def task_resource(row: Any) -> dict[str, Any]:
    """The v1 task resource."""
    return {
        "id": str(row.id),
        "name": row.name,
        "parameters": row.parameters,
        "status": row.status,
        "result": row.result,
        "error": row.error,
        "attempts": row.attempts,
        "progress": row.progress,
        "progress_message": row.progress_message,
        "priority": row.priority,
        "queue": row.queue,
        "created_at": _iso(row.created_at),
        "started_at": _iso(row.started_at),
        "completed_at": _iso(row.completed_at),
        "retry_of": str(row.retry_of) if row.retry_of else None,
        "cancel_requested": row.cancel_requested_at is not None,
        "run_at": _iso(row.run_at),
        "schedule_id": str(row.schedule_id) if row.schedule_id else None,
        "scheduled_for": _iso(row.scheduled_for),
    }


def schedule_resource(row: Any) -> dict[str, Any]:
    """The v1 schedule resource."""
    return {
        "id": str(row.id),
        "name": row.name,
        "task": row.task,
        "parameters": row.parameters,
        "cron": row.cron,
        "timezone": row.timezone,
        "priority": row.priority,
        "enabled": row.enabled,
        "next_run_at": _iso(row.next_run_at),
        "last_run_at": _iso(row.last_run_at),
        "last_task_id": str(row.last_task_id) if row.last_task_id else None,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def encode_cursor(row: Any) -> str:
    raw = json.dumps([row.created_at.isoformat(), str(row.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) a cursor stands for; InvalidInput if it was not made by encode_cursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, task_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(task_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not valid: pass the next_cursor of a previous page unchanged.",
            {"cursor": ["Not a valid cursor."]},
        ) from None
