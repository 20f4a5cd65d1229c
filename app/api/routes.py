"""The reference endpoints and the health checks: thin handlers over the TaskManager."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.api import schemas
from app.api.docs import submit_body
from app.api.errors import error_response
from app.core.task_manager import TaskManager

run_task_schema = schemas.RunTaskRequest()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 for another content type, 400 for anything else."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        body = json.loads(request.get_data(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def create_routes(task_manager: TaskManager) -> Blueprint:
    bp = Blueprint("reference", __name__, description="The reference endpoints, and health checks")

    @bp.post("/run-task")
    @bp.doc(operationId="runTask")
    @bp.doc(
        summary="Submit a task",
        requestBody=submit_body(task_manager.registry, "task_name", "task_parameters"),
    )
    @bp.response(200, schemas.RunTaskResponse)
    def run_task() -> dict[str, Any]:
        data = run_task_schema.load(json_object())
        submission = task_manager.submit(data["task_name"], data["task_parameters"])
        return {"task_uuid": submission.id}

    @bp.get("/get-task-output")
    @bp.doc(summary="Status, result and error of a task", operationId="getTaskOutput")
    @bp.arguments(schemas.TaskOutputQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.TaskOutputResponse)
    def get_task_output(task_uuid: Any) -> dict[str, Any]:
        return {"task_output": task_manager.get_output(task_uuid)}

    @bp.get("/health")
    @bp.doc(summary="Liveness: the process answers")
    @bp.response(200, schemas.Health)
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @bp.get("/health/ready")
    @bp.doc(summary="Readiness: database, broker and at least one worker answer (503 names what is down)")
    @bp.response(200, schemas.Health)
    def ready() -> Response | dict[str, Any]:
        checks: dict[str, Any] = task_manager.check_dependencies()
        down = [f"the {name}" for name in ("database", "broker") if checks[name] != "ok"]
        checks["workers"] = task_manager.check_workers(timeout=1.0) if checks["broker"] == "ok" else 0
        if checks["workers"] == 0:
            down.append("every worker (none answered a ping within 1 s)")
        if down:
            verb = "is" if len(down) == 1 else "are"
            message = f"Not ready: {' and '.join(down)} {verb} unavailable."
            return error_response(503, message, "not_ready", checks)
        return {"status": "ready", "checks": checks}

    @bp.get("/health/db")
    @bp.doc(summary="The database answers (503 if not)")
    @bp.response(200, schemas.Health)
    def health_db() -> Response | dict[str, Any]:
        check = task_manager.check_dependencies()["database"]
        if check != "ok":
            return error_response(503, "The database is unavailable.", "not_ready", {"database": check})
        return {"status": "ok", "checks": {"database": "ok"}}

    @bp.get("/health/redis")
    @bp.doc(summary="Redis answers, as cache and as broker, where it is used (503 if not)")
    @bp.response(200, schemas.Health)
    def health_redis() -> Response | dict[str, Any]:
        checks = task_manager.check_redis()
        down = [name for name, check in checks.items() if check != "ok" and not check.startswith("not used")]
        if down:
            return error_response(
                503, f"Redis is unavailable (as the {' and the '.join(down)}).", "not_ready", checks
            )
        return {"status": "ok", "checks": checks}

    return bp
