"""The v1 workflows API: steps that are tasks, run as their parents allow."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import ValidationError

from app.api import schemas
from app.api.docs import json_schema
from app.api.helpers import json_object, location, owner, parse_id, scope
from app.api.waits import WaitSlots
from app.core.errors import InvalidInput
from app.core.workflows.manager import WorkflowManager
from app.core.workflows.templates import Templates

request_schema = schemas.WorkflowRequest()


def create_workflow_routes(manager: WorkflowManager, waits: WaitSlots) -> Blueprint:
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

    @bp.post("/workflows/<id:workflow_id>/cancel")
    @bp.doc(
        summary="Cancel a workflow: steps not started end, running ones are asked to stop",
        operationId="cancelWorkflow",
    )
    @bp.response(200, schemas.Workflow)
    def cancel_workflow(workflow_id: str) -> dict[str, Any]:
        return manager.cancel(parse_id(workflow_id, "workflow"), scope())

    _add_read(bp, manager, waits)
    _add_resume(bp, manager)
    _add_templates(bp, manager.templates)
    return bp


def _add_read(bp: Blueprint, manager: WorkflowManager, waits: WaitSlots) -> None:
    @bp.get("/workflows/<id:workflow_id>")
    @bp.doc(
        summary="A workflow and each step's status, task, result or error; with ?wait=N, answers as "
        "soon as it has ended or after N seconds",
        operationId="getWorkflow",
    )
    @bp.arguments(schemas.WaitQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.Workflow)
    def get_workflow(workflow_id: str, wait: float) -> Any:
        key = parse_id(workflow_id, "workflow")
        if not wait:
            return manager.get(key, scope())
        with waits.slot() as granted:
            if not granted:  # every wait slot of this process is taken: answer now, and say so
                busy = f"skipped; busy ({waits.limit} waits in progress)"
                return manager.get(key, scope()), 200, {"Tasker-Wait": busy, "Retry-After": "1"}
            return manager.get(key, scope(), wait, until=waits.until_or_gone)


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


def _add_templates(bp: Blueprint, templates: Templates) -> None:
    @bp.put("/workflow-templates/<template:name>")
    @bp.doc(
        summary="Store a workflow template: its steps, and a JSON Schema for the input it starts with",
        operationId="putWorkflowTemplate",
    )
    @bp.arguments(schemas.WorkflowTemplateRequest())
    @bp.response(200, schemas.WorkflowTemplate, description="Replaced")
    @bp.alt_response(201, schema=schemas.WorkflowTemplate, description="Created")
    def put_template(body: dict[str, Any], name: str) -> tuple[dict[str, Any], int]:
        resource, created = templates.put(owner(), template_name(name), body)
        return resource, 201 if created else 200

    @bp.get("/workflow-templates")
    @bp.doc(summary="The caller's workflow templates, by name", operationId="listWorkflowTemplates")
    @bp.arguments(schemas.WorkflowTemplateListQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.WorkflowTemplateList)
    def list_templates(limit: int, cursor: str | None = None) -> dict[str, Any]:
        return templates.list(owner(), limit, cursor)

    @bp.get("/workflow-templates/<template:name>")
    @bp.doc(summary="A workflow template", operationId="getWorkflowTemplate")
    @bp.response(200, schemas.WorkflowTemplate)
    def get_template(name: str) -> dict[str, Any]:
        return templates.get(owner(), template_name(name))

    @bp.delete("/workflow-templates/<template:name>")
    @bp.doc(
        summary="Delete a workflow template (workflows it started go on)",
        operationId="deleteWorkflowTemplate",
    )
    @bp.response(204)
    def delete_template(name: str) -> None:
        templates.delete(owner(), template_name(name))


def template_name(name: str) -> str:
    """A template's name from the path, by the rules a workflow's name follows."""
    try:
        return schemas.TemplateName().load({"name": name})["name"]
    except ValidationError as exc:
        messages = exc.normalized_messages()["name"]
        raise InvalidInput(f"name: {' '.join(messages)}", {"name": messages}) from None


def _body_schema() -> dict[str, Any]:
    """The request's JSON Schema with the step inlined (a $ref would point at a component nothing
    registers)."""
    body = json_schema(request_schema)
    step = json_schema(schemas.WorkflowStepRequest())
    step["properties"]["map"] = json_schema(schemas.WorkflowMapRequest())
    body["properties"]["steps"]["items"] = step
    return body
