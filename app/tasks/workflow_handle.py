"""What `tasker.workflow(...)` returns: a workflow's id, and its record read back (waiting on the
change notifications, as `GET /api/v1/workflows/<id>?wait=` does)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError

from app.models.workflow import WorkflowStatus
from app.tasks.errors import TaskFailed

ENDED = (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED, WorkflowStatus.CANCELLED)


class WorkflowHandle:
    def __init__(self, workflows: Any, workflow_id: str, owner: str):
        self.workflows = workflows
        self.id = workflow_id
        self.owner = owner

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    def info(self, wait: float = 0) -> dict[str, Any]:
        """The workflow resource, as GET /api/v1/workflows/<id> answers it."""
        return self.workflows.get(uuid.UUID(self.id), self.owner, wait_seconds=wait)

    @property
    def status(self) -> str:
        return self.info()["status"]

    def ready(self) -> bool:
        return self.status in ENDED

    def results(self) -> dict[str, Any]:
        """Each step's result by its id (a map step's: the array of its items' results)."""
        return {step["id"]: step["result"] for step in self.info()["steps"]}

    def get(self, timeout: float | None = None, propagate: bool = True) -> dict[str, Any]:
        """Each step's result once the workflow has ended. FAILED or CANCELLED raises TaskFailed
        with its error (with `propagate=False`, the results are returned all the same); past
        `timeout` seconds, Celery's TimeoutError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else min(30.0, deadline - time.monotonic())
            if left <= 0:
                raise CeleryTimeoutError(f"workflow {self.id} did not end within {timeout:g} s")
            workflow = self.info(wait=left)
            if workflow["status"] in ENDED:
                break
        if workflow["status"] != WorkflowStatus.COMPLETED and propagate:
            raise TaskFailed(workflow["error"] or f"The workflow was {workflow['status']}.")
        return {step["id"]: step["result"] for step in workflow["steps"]}
