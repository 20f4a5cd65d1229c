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
    @bp.arguments(schemas.IdempotencyHeaders(), location="headers", as_kwargs=True)
    @bp.response(202, schemas.Workflow)
    @bp.alt_response(
        200,
        schema=schemas.Workflow,
        description="The workflow an earlier request with this Idempotency-Key made",
    )
    def create(idempotency_key: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
        body = request_schema.load(json_object())
        workflow, created = manager.submit(body, owner(), idempotency_key)
        return workflow, 202 if created else 200, location("workflows", workflow["id"])

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

    _add_resume(bp, manager)
    return bp


def _add_resume(bp: Blueprint, manager: WorkflowManager) -> None:
    @bp.post("/workflows/<id:workflow_id>/resume")
    @bp.doc(
        summary="Run an ended workflow's failed and cancelled steps again, and the steps after them",
        operationId="resumeWorkflow",
    )
    @bp.arguments(schemas.WorkflowResumeRequest(), required=False)
    @bp.response(202, schemas.Workflow)
    def resume_workflow(body: dict[str, Any], workflow_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        workflow = manager.resume(parse_id(workflow_id, "workflow"), scope(), (body or {}).get("steps"))
        return workflow, 202, location("workflows", workflow["id"])


def _body_schema() -> dict[str, Any]:
    """The request's JSON Schema with the step inlined (a $ref would point at a component nothing
    registers)."""
    body = json_schema(request_schema)
    step = json_schema(schemas.WorkflowStepRequest())
    step["properties"]["map"] = json_schema(schemas.WorkflowMapRequest())
    body["properties"]["steps"]["items"] = step
    return body
