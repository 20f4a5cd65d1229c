"""How rows are shown to clients (resources and their schemas, from one source), and the list cursor."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, fields, pre_dump, validate

from app.core.errors import InvalidInput
from app.core.retries import RETRY_ON
from app.models.task import TaskStatus


def utc_iso(value: datetime) -> str:
    """How Tasker writes a point in time: ISO 8601 in UTC with a Z, always to the microsecond (one
    width, so the strings sort as the times do)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Timestamp(fields.DateTime):
    """A point in time as utc_iso() writes it; one already written so is kept as it is."""

    def _serialize(self, value: datetime | str | None, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return utc_iso(value)


def task_output(
    status: str, result: Any, error: str | None, progress: int | None = None, message: str | None = None
) -> dict[str, Any]:
    """The reference's `task_output` object; `progress` appears once the task has reported some."""
    output = {"status": status, "result": result, "error": error}
    if progress is not None:
        output |= {"progress": progress, "progress_message": message}
    return output


class _Resource(Schema):
    """Dumps a row (a resource already made, as the API dumps what the managers return, is kept)."""

    @pre_dump
    def from_row(self, row: Any, **kwargs: Any) -> Any:
        if isinstance(row, Mapping):
            return row
        values = dict(row._mapping) if hasattr(row, "_mapping") else vars(row)  # a Row, or columns
        return values | self.derived(row)

    def derived(self, row: Any) -> dict[str, Any]:
        """Fields computed from the row's columns."""
        return {}


class Webhook(Schema):
    url = fields.String(required=True)
    events = fields.List(fields.String(), required=True)


class RetryPolicy(Schema):
    max_retries = fields.Integer(required=True)
    on = fields.String(required=True, validate=validate.OneOf(RETRY_ON))


class TaskConcurrency(Schema):
    key = fields.String(required=True, metadata={"description": "The key it runs under"})
    limit = fields.Integer(
        required=True, metadata={"description": "How many of the key's tasks may run at once"}
    )
    slot = fields.Integer(
        allow_none=True, metadata={"description": "The slot it holds, 0 to limit - 1 (null: none yet)"}
    )


class Task(_Resource):
    """The v1 task resource: made from a row here, and the API's response schema."""

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    parameters = fields.Dict(required=True)
    status = fields.String(required=True, validate=validate.OneOf([s.value for s in TaskStatus]))
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)
    attempts = fields.Integer(required=True)
    progress = fields.Integer(allow_none=True)
    progress_message = fields.String(allow_none=True)
    priority = fields.Integer(required=True)
    queue = fields.String(required=True)
    created_at = Timestamp(required=True)
    started_at = Timestamp(allow_none=True)
    completed_at = Timestamp(allow_none=True)
    retry_of = fields.UUID(allow_none=True)
    cancel_requested = fields.Boolean(required=True)
    run_at = Timestamp(allow_none=True, metadata={"description": "When a SCHEDULED task is due"})
    schedule_id = fields.UUID(allow_none=True, metadata={"description": "The schedule that made this task"})
    scheduled_for = Timestamp(allow_none=True, metadata={"description": "The schedule's fire time"})
    owner = fields.String(required=True, metadata={"description": "The owner of the key that made it"})
    webhook = fields.Nested(
        Webhook, allow_none=True, metadata={"description": "Where its ending is delivered (null: nowhere)"}
    )
    retry_policy = fields.Nested(
        RetryPolicy,
        allow_none=True,
        metadata={"description": "The retry policy given at submit (null: its task type's)"},
    )
    timeout_seconds = fields.Integer(
        allow_none=True, metadata={"description": "Its hard time limit, given at submit (null: its type's)"}
    )
    tags = fields.List(fields.String(), allow_none=True, metadata={"description": "key:value strings"})
    workflow_id = fields.UUID(allow_none=True, metadata={"description": "The workflow it is a step of"})
    step = fields.String(
        allow_none=True,
        metadata={"description": "Its step's id in that workflow (a map's item: `resize[17]`)"},
    )
    concurrency = fields.Nested(
        TaskConcurrency, metadata={"description": "Its concurrency key (only on a task that has one)"}
    )
    waiting_for = fields.Dict(
        metadata={
            "description": 'What a WAITING task waits for: {"queue_paused": queue}, its queue to be '
            'resumed; {"rate_limit": name, "until": time}, its turn under a rate limit; or '
            '{"concurrency": key}, a slot of its key (only while it waits for one)'
        }
    )
    warnings = fields.List(
        fields.String(),
        metadata={
            "description": "Said at submit only: why the task may wait (no live worker serves its type)"
        },
    )

    def derived(self, row: Any) -> dict[str, Any]:
        derived: dict[str, Any] = {"cancel_requested": row.cancel_requested_at is not None}
        key = getattr(row, "concurrency_key", None)
        if key is not None:
            derived["concurrency"] = {
                "key": key,
                "limit": row.concurrency_limit,
                "slot": row.concurrency_slot,
            }
            if row.status == TaskStatus.WAITING and row.concurrency_slot is None:
                derived["waiting_for"] = {"concurrency": key}
        limit = getattr(row, "rate_limit", None)
        if limit is not None and row.status == TaskStatus.WAITING:
            derived["waiting_for"] = {"rate_limit": limit, "until": utc_iso(row.rate_until)}
        paused = getattr(row, "paused_queue", None)
        if paused is not None and row.status == TaskStatus.WAITING:
            derived["waiting_for"] = {"queue_paused": paused}  # before any slot: the pause comes first
        return derived


class Schedule(_Resource):
    """The v1 schedule resource: made from a row here, and the API's response schema."""

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    task = fields.String(required=True)
    parameters = fields.Dict(required=True)
    cron = fields.String(required=True)
    timezone = fields.String(required=True)
    priority = fields.Integer(required=True)
    enabled = fields.Boolean(required=True)
    next_run_at = Timestamp(allow_none=True, metadata={"description": "null while paused"})
    last_run_at = Timestamp(allow_none=True)
    last_task_id = fields.UUID(allow_none=True)
    created_at = Timestamp(required=True)
    updated_at = Timestamp(required=True)
    owner = fields.String(required=True, metadata={"description": "The owner of the key that made it"})
    webhook = fields.Nested(
        Webhook, allow_none=True, metadata={"description": "Given to every task it makes (null: none)"}
    )
    tags = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "Given to every task it makes (null: none)"},
    )


_TASK, _SCHEDULE = Task(), Schedule()


def task_resource(row: Any) -> dict[str, Any]:
    """The v1 task resource."""
    return _TASK.dump(row)


def schedule_resource(row: Any) -> dict[str, Any]:
    """The v1 schedule resource."""
    return _SCHEDULE.dump(row)


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
