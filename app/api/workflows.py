"""The v1 workflows API: steps that are tasks, run as their parents allow."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.api import schemas
from app.api.docs import json_schema
from app.api.helpers import json_object, location, owner, parse_id, scope
from app.core.workflows.manager import WorkflowManager

request_schema = schemas.WorkflowRequest()


def create_workflow_routes(manager: WorkflowManager) -> Blueprint:
    bp = Blueprint("workflows", __name__, url_prefix="/api/v1", description="Workflows of steps")

    @bp.post("/workflows")
    @bp.doc(
        summary="Start a workflow: its steps, their parents and parameters, checked whole",
        operationId="createWorkflow",
        requestBody={
            "required": True,
            "content": {"application/json": {"schema": _body_schema()}},
        },
    )
    @bp.response(202, schemas.Workflow)
    def create() -> tuple[dict[str, Any], int, dict[str, str]]:
        workflow = manager.submit(request_schema.load(json_object()), owner())
        return workflow, 202, location("workflows", workflow["id"])

    @bp.get("/workflows")
    @bp.doc(summary="Workflows, newest first, with cursor pagination", operationId="listWorkflows")
    @bp.arguments(schemas.WorkflowListQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.WorkflowList)
    def list_workflows(
        limit: int,
        cursor: str | None = None,
        owner: str | None = None,
        status: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        return manager.list(limit, cursor, scope(owner), status, name)

    @bp.get("/workflows/<id:workflow_id>")
    @bp.doc(summary="A workflow and each step's status, task, result or error", operationId="getWorkflow")
    @bp.response(200, schemas.Workflow)
    def get_workflow(workflow_id: str) -> dict[str, Any]:
        return manager.get(parse_id(workflow_id, "workflow"), scope())

    @bp.post("/workflows/<id:workflow_id>/cancel")
    @bp.doc(
        summary="Cancel a workflow: steps not started end, running ones are asked to stop",
        operationId="cancelWorkflow",
    )
    @bp.response(200, schemas.Workflow)
    def cancel_workflow(workflow_id: str) -> dict[str, Any]:
        return manager.cancel(parse_id(workflow_id, "workflow"), scope())

    return bp


def _body_schema() -> dict[str, Any]:
    """The request's JSON Schema with the step inlined (a $ref would point at a component nothing
    registers)."""
    body = json_schema(request_schema)
    body["properties"]["steps"]["items"] = json_schema(schemas.WorkflowStepRequest())
    return body
