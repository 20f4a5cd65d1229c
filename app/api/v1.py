"""The v1 resource API: submit, read, wait for, list, cancel and retry tasks; the task catalog."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask_smorest import Blueprint

from app.api import schemas
from app.api.docs import json_schema, submit_body
from app.api.routes import json_object
from app.core.errors import InvalidInput
from app.core.task_manager import TaskManager

submit_schema = schemas.TaskSubmitRequest()


def parse_id(value: str, what: str = "task") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            f"{value[:50]!r} is not a valid {what} id (a UUID).", {"id": ["Not a valid UUID."]}
        ) from None


def _utc(field: str, value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise InvalidInput(
            f"{field} is out of range.", {field: ["Out of range once converted to UTC."]}
        ) from None


def location(task_id: Any) -> dict[str, str]:
    return {"Location": f"/api/v1/tasks/{task_id}"}


def create_v1_routes(task_manager: TaskManager) -> list[Blueprint]:
    bp = Blueprint("tasks", __name__, url_prefix="/api/v1", description="Tasks as resources")

    @bp.post("/tasks")
    @bp.doc(operationId="submitTask")
    @bp.doc(
        summary="Submit a task",
        requestBody=submit_body(task_manager.registry, "name", "parameters", schemas.SUBMIT_OPTIONS),
    )
    @bp.arguments(schemas.IdempotencyHeaders(), location="headers", as_kwargs=True)
    @bp.response(202, schemas.Task, description="Accepted: stored and queued")
    @bp.alt_response(
        200, schema=schemas.Task, description="The task an earlier request with this Idempotency-Key made"
    )
    def submit(idempotency_key: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
        data = submit_schema.load(json_object())
        submission = task_manager.submit(
            data["name"],
            data["parameters"],
            idempotency_key=idempotency_key,
            parameters_field="parameters",
            priority=data["priority"],
            run_at=data.get("run_at"),
            countdown=data.get("countdown"),
        )
        status = 202 if submission.created else 200
        return task_manager.get(submission.id), status, location(submission.id)

    @bp.get("/tasks/<task_id:task_id>")
    @bp.doc(
        summary="A task; with ?wait=N, answers as soon as it is terminal or after N seconds",
        operationId="getTask",
    )
    @bp.arguments(schemas.WaitQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.Task)
    def get_task(task_id: str, wait: float) -> dict[str, Any]:
        return task_manager.get(parse_id(task_id), wait_seconds=wait)

    @bp.get("/tasks")
    @bp.doc(summary="Tasks, newest first, with filters and cursor pagination")
    @bp.arguments(schemas.TaskListQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.TaskPage)
    def list_tasks(limit: int, cursor: str | None = None, **filters: Any) -> dict[str, Any]:
        for bound in ("created_after", "created_before"):
            if filters.get(bound) is not None:
                filters[bound] = _utc(bound, filters[bound])
        if "status" in filters:
            filters["statuses"] = filters.pop("status")
        return task_manager.list(limit, cursor, **filters)

    @bp.post("/tasks/<task_id:task_id>/cancel")
    @bp.doc(
        summary="Cancel a task: at once if not started, at its next step if STARTED", operationId="cancelTask"
    )
    @bp.response(200, schemas.Task, description="CANCELLED")
    @bp.alt_response(202, schema=schemas.Task, description="STARTED: cancellation requested")
    def cancel(task_id: str) -> tuple[dict[str, Any], int]:
        resource, cancelled = task_manager.cancel(parse_id(task_id))
        return resource, 200 if cancelled else 202

    @bp.post("/tasks/<task_id:task_id>/retry")
    @bp.doc(summary="Run a FAILED or CANCELLED task again, as a new task", operationId="retryTask")
    @bp.response(201, schemas.Task)
    def retry(task_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        resource = task_manager.retry(parse_id(task_id))
        return resource, 201, location(resource["id"])

    @bp.get("/task-types")
    @bp.doc(summary="Every task type, its aliases, queue, limits and parameters (JSON Schema)")
    @bp.response(200, schemas.TaskTypeList)
    def task_types() -> dict[str, Any]:
        return {"task_types": [_task_type(t) for t in task_manager.registry]}

    @bp.get("/queues")
    @bp.doc(
        summary="Per queue: messages waiting, PENDING and STARTED tasks, the oldest PENDING's age; totals"
    )
    @bp.response(200, schemas.QueueReport)
    def queues() -> dict[str, Any]:
        return task_manager.queue_stats()

    short = Blueprint("short", __name__, description="Short paths for a task's status and result")

    @short.get("/tasks/<task_id:task_id>/status")
    @short.doc(operationId="getTaskStatus")
    @short.response(200, schemas.TaskStatusView)
    def task_status(task_id: str) -> dict[str, Any]:
        return task_manager.get(parse_id(task_id))

    @short.get("/tasks/<task_id:task_id>/result")
    @short.doc(operationId="getTaskResult")
    @short.response(200, schemas.TaskResultView)
    def task_result(task_id: str) -> dict[str, Any]:
        return task_manager.get(parse_id(task_id))

    return [bp, short]


def _task_type(task_type: Any) -> dict[str, Any]:
    return {
        "name": task_type.name,
        "aliases": list(task_type.aliases),
        "description": task_type.description,
        "queue": task_type.queue,
        "soft_time_limit": task_type.soft_time_limit,
        "time_limit": task_type.time_limit,
        "max_retries": task_type.max_retries,
        "parameters": json_schema(task_type.schema),
    }
