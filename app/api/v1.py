"""The v1 task resources: submit, read (and wait for), list, cancel and retry."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import ValidationError

from app.api import schemas
from app.api.docs import option_fields, submit_body
from app.api.helpers import json_object, location, owner, parse_id, scope, utc
from app.api.waits import WaitSlots
from app.core.errors import DependencyUnavailable, TaskerError, describe_messages
from app.core.served import ServedTypes
from app.core.task_manager import SubmitRequest, TaskManager

submit_schema = schemas.TaskSubmitRequest()
bulk_schema, bulk_item_schema = schemas.BulkSubmitRequest(), schemas.BulkItem()


def create_v1_routes(
    task_manager: TaskManager, waits: WaitSlots, served: ServedTypes | None = None
) -> Blueprint:
    bp = Blueprint("tasks", __name__, url_prefix="/api/v1", description="Tasks as resources")

    options = option_fields(submit_schema, ("name", "parameters"))
    submit_doc = submit_body(task_manager.registry, "name", "parameters", options, policy=task_manager.policy)
    _add_submit_and_read(bp, task_manager, waits, submit_doc, served)
    _add_list_and_actions(bp, task_manager)
    return bp


def _add_submit_and_read(
    bp: Blueprint, task_manager: TaskManager, waits: WaitSlots, submit_doc: Any, served: ServedTypes | None
) -> None:
    @bp.post("/tasks")
    @bp.doc(summary="Submit a task", operationId="submitTask", requestBody=submit_doc)
    @bp.arguments(schemas.IdempotencyHeaders(), location="headers", as_kwargs=True)
    @bp.response(202, schemas.Task, description="Accepted: stored and queued")
    @bp.alt_response(
        200, schema=schemas.Task, description="The task an earlier request with this Idempotency-Key made"
    )
    def submit(idempotency_key: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
        data = submit_schema.load(json_object())
        name, parameters = data.pop("name"), data.pop("parameters")
        request = SubmitRequest(name, parameters, idempotency_key=idempotency_key, owner=owner(), **data)
        submission = task_manager.submit(request)
        resource = submission.resource()
        if submission.created:
            warnings = _warnings(task_manager, served, resource["name"], "priority" in data)
            if warnings:  # accepted all the same: said so, not refused
                resource["warnings"] = warnings
        return resource, 202 if submission.created else 200, location("tasks", submission.id)

    @bp.post("/tasks/bulk")
    @bp.doc(
        summary=f"Submit up to {schemas.MAX_BULK} tasks in one request, group-committed",
        operationId="submitTasks",
        requestBody=bulk_body(submit_doc),
    )
    @bp.response(200, schemas.BulkResults, description="Each item's outcome, in order: a task, or its error")
    def submit_bulk() -> dict[str, Any]:
        return bulk_submit(task_manager, bulk_schema.load(json_object())["tasks"])

    @bp.get("/tasks/<id:task_id>")
    @bp.doc(
        summary="A task; with ?wait=N, answers as soon as it is terminal or after N seconds",
        operationId="getTask",
    )
    @bp.arguments(schemas.WaitQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.Task)
    def get_task(task_id: str, wait: float) -> Any:
        if not wait:
            return task_manager.get(parse_id(task_id), owner=scope())
        with waits.slot() as granted:
            if not granted:  # every wait slot of this process is taken: answer now, and say so
                resource = task_manager.get(parse_id(task_id), owner=scope())
                busy = f"skipped; busy ({waits.limit} waits in progress)"
                return resource, 200, {"Tasker-Wait": busy, "Retry-After": "1"}
            return task_manager.get(parse_id(task_id), wait, owner=scope(), until=waits.until_or_gone)


def _bulk_action(
    task_manager: TaskManager, action: str, key: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    """A bulk retry or cancel of the tasks `body`'s filters match, once per Idempotency-Key."""
    filters = dict(body)
    whose = scope(filters.pop("owner", None))
    for bound in ("created_after", "created_before"):
        if filters.get(bound) is not None:
            filters[bound] = utc(bound, filters[bound])
    if "status" in filters:
        filters["statuses"] = filters.pop("status") or None
    run = task_manager.retry_many if action == "retry" else task_manager.cancel_many
    return task_manager.bulk_once(owner(), key, action, body, lambda: run(whose, **filters))


def bulk_body(submit_doc: dict[str, Any]) -> dict[str, Any]:
    """The bulk request's body: `tasks`, an array of what POST /api/v1/tasks takes (each with an
    optional idempotency_key)."""
    item = submit_doc["content"]["application/json"]["schema"]
    tasks = {"type": "array", "minItems": 1, "maxItems": schemas.MAX_BULK, "items": item}
    schema = {
        "type": "object",
        "properties": {"tasks": tasks},
        "required": ["tasks"],
        "additionalProperties": False,
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def bulk_submit(task_manager: TaskManager, items: list[Any]) -> dict[str, Any]:
    """Each item checked as a submit's body, then all submitted at once (TaskManager.submit_many);
    a bad item refuses only itself. A dependency down for every item is the request's 503."""
    results: list[dict[str, Any] | None] = [None] * len(items)
    requests: list[tuple[int, SubmitRequest]] = []
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ValidationError({"_schema": ["Must be a JSON object: a submit's body."]})
            data = bulk_item_schema.load(item)
        except ValidationError as exc:
            problems = " ".join(describe_messages(exc.messages))
            error = {
                "error": f"Invalid request: {problems}",
                "code": "validation_error",
                "details": exc.messages,
            }
            results[index] = {"index": index, "error": error}
            continue
        name, parameters = data.pop("name"), data.pop("parameters")
        requests.append((index, SubmitRequest(name, parameters, owner=owner(), **data)))
    outcomes = task_manager.submit_many([request for _, request in requests])
    down = [o for o in outcomes if isinstance(o, DependencyUnavailable)]
    if down and len(down) == len(items):
        raise down[0]
    for (index, _), outcome in zip(requests, outcomes, strict=True):
        if isinstance(outcome, TaskerError):
            error = {"error": outcome.message, "code": outcome.code, "details": outcome.details}
            results[index] = {"index": index, "error": error}
        else:
            row = outcome.earlier if outcome.written is None else outcome.written
            status = row["status"] if isinstance(row, dict) else row.status
            results[index] = {"index": index, "id": outcome.id, "status": status, "created": outcome.created}
    failed = sum(1 for result in results if result is not None and "error" in result)
    return {"results": results, "submitted": len(items) - failed, "failed": failed}


def _warnings(
    task_manager: TaskManager, served: ServedTypes | None, name: str, prioritised: bool
) -> list[str]:
    """What a client should know of a task it was not refused: no live worker serves its type (one
    may be on its way), or a priority the broker cannot honour."""
    warnings = []
    unserved = served.unserved(name) if served is not None else None
    if unserved is not None:
        warnings.append(unserved)
    if prioritised and not task_manager.broker.has_priorities():
        warnings.append(
            f"priority: the {task_manager.broker.kind} broker has no priorities, so tasks run in the "
            "order they arrive; Redis and RabbitMQ honour them"
        )
    return warnings


def _add_list_and_actions(bp: Blueprint, task_manager: TaskManager) -> None:
    @bp.get("/tasks")
    @bp.doc(summary="Tasks, newest first, with filters and cursor pagination")
    @bp.arguments(schemas.TaskListQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.TaskPage)
    def list_tasks(
        limit: int, cursor: str | None = None, owner: str | None = None, **filters: Any
    ) -> dict[str, Any]:
        for bound in ("created_after", "created_before"):
            if filters.get(bound) is not None:
                filters[bound] = utc(bound, filters[bound])
        if "status" in filters:
            filters["statuses"] = filters.pop("status")
        return task_manager.list(limit, cursor, owner=scope(owner), **filters)

    @bp.post("/tasks/<id:task_id>/cancel")
    @bp.doc(
        summary="Cancel a task: at once if not started, at its next step if STARTED", operationId="cancelTask"
    )
    @bp.response(200, schemas.Task, description="CANCELLED")
    @bp.alt_response(202, schema=schemas.Task, description="STARTED: cancellation requested")
    def cancel(task_id: str) -> tuple[dict[str, Any], int]:
        resource, cancelled = task_manager.cancel(parse_id(task_id), owner=scope())
        return resource, 200 if cancelled else 202

    @bp.post("/tasks/retry")
    @bp.doc(
        summary="Retry every FAILED and CANCELLED task the filters match that is not retried yet",
        operationId="retryTasks",
    )
    @bp.arguments(schemas.IdempotencyHeaders(), location="headers", as_kwargs=True)
    @bp.arguments(schemas.BulkRetryFilters(), as_kwargs=True)
    @bp.response(200, schemas.BulkActionResult)
    def retry_many(idempotency_key: str | None = None, **filters: Any) -> dict[str, Any]:
        return _bulk_action(task_manager, "retry", idempotency_key, filters)

    @bp.post("/tasks/cancel")
    @bp.doc(summary="Cancel every unfinished task the filters match", operationId="cancelTasks")
    @bp.arguments(schemas.IdempotencyHeaders(), location="headers", as_kwargs=True)
    @bp.arguments(schemas.BulkCancelFilters(), as_kwargs=True)
    @bp.response(200, schemas.BulkActionResult)
    def cancel_many(idempotency_key: str | None = None, **filters: Any) -> dict[str, Any]:
        return _bulk_action(task_manager, "cancel", idempotency_key, filters)

    @bp.post("/tasks/<id:task_id>/retry")
    @bp.doc(summary="Run a FAILED or CANCELLED task again, as a new task", operationId="retryTask")
    @bp.response(201, schemas.Task)
    def retry(task_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        resource = task_manager.retry(parse_id(task_id), owner=scope())
        return resource, 201, location("tasks", resource["id"])


def create_short_routes(task_manager: TaskManager) -> Blueprint:
    bp = Blueprint("short", __name__, description="Short paths for a task's status and result")

    @bp.get("/tasks/<id:task_id>/status")
    @bp.doc(operationId="getTaskStatus")
    @bp.response(200, schemas.TaskStatusView)
    def task_status(task_id: str) -> dict[str, Any]:
        return task_manager.get(parse_id(task_id), owner=scope())

    @bp.get("/tasks/<id:task_id>/result")
    @bp.doc(operationId="getTaskResult")
    @bp.response(200, schemas.TaskResultView)
    def task_result(task_id: str) -> dict[str, Any]:
        return task_manager.get(parse_id(task_id), owner=scope())

    return bp
