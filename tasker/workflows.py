"""Workflows from Python, in a process that has the Tasker app (a task of one's own, a script that
imports `celery_worker`): the same definition as `POST /api/v1/workflows`, submitted through the
same manager, no HTTP in between.

    from tasker import ref, workflow

    handle = workflow(
        "thumbnails",
        input={"bucket": "photos"},
        steps=[
            {"id": "list", "task": "list_objects", "parameters": {"bucket": ref.input("/bucket")}},
            {"id": "resize", "task": "resize_image", "after": ["list"],
             "map": {"over": ref.step("list", "/keys")}, "parameters": {"key": ref.item()}},
        ],
    )
    handle.get(timeout=60)  # {"list": {...}, "resize": [...]}
"""

from __future__ import annotations

from typing import Any

from celery import current_app
from marshmallow import ValidationError

from app.api.schemas import WorkflowRequest
from app.core.errors import InvalidInput
from app.tasks.handles import PYTHON_OWNER
from app.tasks.workflow_handle import WorkflowHandle


class ref:
    """References, as JSON: the same dicts the HTTP API takes."""

    @staticmethod
    def input(pointer: str = "") -> dict[str, str]:
        return {"$input": pointer}

    @staticmethod
    def step(step_id: str, path: str = "") -> dict[str, str]:
        return {"$step": step_id, "path": path}

    @staticmethod
    def item(pointer: str = "") -> dict[str, str]:
        return {"$item": pointer}


def workflow(
    name: str | None = None,
    steps: list[dict[str, Any]] | None = None,
    *,
    input: dict[str, Any] | None = None,
    on_failure: str | None = None,
    template: str | None = None,
    idempotency_key: str | None = None,
    owner: str = PYTHON_OWNER,
) -> WorkflowHandle:
    """Start a workflow (or a stored template's, with `template`); InvalidInput names a field of
    the definition that breaks a rule, as the API's 400 does."""
    services = getattr(current_app, "services", None)
    if services is None:
        raise RuntimeError(
            "No Tasker app in this process: import celery_worker (or run inside a task) first."
        )
    body = {"name": name, "steps": steps, "input": input, "on_failure": on_failure, "template": template}
    try:
        clean = WorkflowRequest().load({key: value for key, value in body.items() if value is not None})
    except ValidationError as exc:
        field = next(iter(exc.normalized_messages()), "workflow")
        raise InvalidInput(
            f"{field}: {exc.normalized_messages()[field]}", exc.normalized_messages()
        ) from None
    resource, _ = services.workflows.submit(clean, owner, idempotency_key)
    return WorkflowHandle(services.workflows, resource["id"], owner)
