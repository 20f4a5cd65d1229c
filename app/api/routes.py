"""The reference endpoints: /run-task and /get-task-output, thin handlers over the TaskManager."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.api import schemas
from app.api.docs import submit_body
from app.api.helpers import json_object, owner, scope
from app.core.task_manager import FieldNames, SubmitRequest, TaskManager

run_task_schema = schemas.RunTaskRequest()
FIELDS = FieldNames(name="task_name", parameters="task_parameters")


def create_routes(task_manager: TaskManager) -> Blueprint:
    bp = Blueprint("reference", __name__, description="The reference endpoints")

    @bp.post("/run-task")
    @bp.doc(operationId="runTask")
    @bp.doc(
        summary="Submit a task",
        requestBody=submit_body(
            task_manager.registry, FIELDS.name, FIELDS.parameters, policy=task_manager.policy
        ),
    )
    @bp.response(200, schemas.RunTaskResponse)
    def run_task() -> dict[str, Any]:
        data = run_task_schema.load(json_object())
        submission = task_manager.submit(
            SubmitRequest(data["task_name"], data["task_parameters"], fields=FIELDS, owner=owner())
        )
        return {"task_uuid": submission.id}

    @bp.get("/get-task-output")
    @bp.doc(summary="Status, result and error of a task", operationId="getTaskOutput")
    @bp.arguments(schemas.TaskOutputQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.TaskOutputResponse)
    def get_task_output(task_uuid: Any) -> dict[str, Any]:
        return {"task_output": task_manager.get_output(task_uuid, owner=scope())}

    return bp
