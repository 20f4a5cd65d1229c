"""The reference endpoints: thin handlers over the TaskManager."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app.api.errors import error_response
from app.api.schemas import RunTaskRequest, TaskOutputQuery
from app.core.task_manager import TaskManager

run_task_schema = RunTaskRequest()
task_output_schema = TaskOutputQuery()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_body() -> Any:
    """The request body as JSON; 415 for another content type, 400 for invalid JSON."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        return json.loads(request.get_data(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None


def create_routes(task_manager: TaskManager) -> Blueprint:
    bp = Blueprint("tasks", __name__)

    @bp.post("/run-task")
    def run_task() -> Response:
        body = json_body()
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object.")
        data = run_task_schema.load(body)
        task_id = task_manager.submit(data["task_name"], data["task_parameters"])
        return jsonify({"task_uuid": str(task_id)})

    @bp.get("/get-task-output")
    def get_task_output() -> Response:
        args = task_output_schema.load(request.args.to_dict())
        return jsonify({"task_output": task_manager.get_output(args["task_uuid"])})

    @bp.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @bp.get("/health/ready")
    def ready() -> Response:
        checks = task_manager.check_dependencies()
        down = [name for name in ("database", "broker") if checks[name] != "ok"]
        if down:
            verb = "is" if len(down) == 1 else "are"
            message = f"Not ready: the {' and the '.join(down)} {verb} unavailable."
            return error_response(503, message, "not_ready", checks)
        return jsonify({"status": "ready", "checks": checks})

    return bp
