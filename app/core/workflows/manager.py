"""The use cases behind /api/v1/workflows: submit, read, list and cancel."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from app.core.broker import Broker, Message, headers
from app.core.database_manager import DatabaseManager
from app.core.endings import Endings
from app.core.errors import BrokerUnavailable, NotFound
from app.core.live.changes import LIST_STREAMS
from app.core.ports import Registry
from app.core.resources import decode_cursor, encode_cursor, utc_iso
from app.core.workflows.definition import Step, parse
from app.models import task as task_model
from app.models import workflow as workflow_model
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus


class WorkflowNotFound(NotFound):
    """No workflow of that id (of the caller's)."""


class WorkflowManager:
    """Every method takes the caller's `owner`: another owner's workflow is not found, exactly like
    an unknown id; `owner=None` (an admin) reaches every one."""

    def __init__(self, endings: Endings, registry: Registry, broker: Broker, max_steps: int):
        self.endings = endings
        self.db: DatabaseManager = endings.db
        self.registry = registry
        self.broker = broker
        self.max_steps = max_steps

    def submit(self, body: Mapping[str, Any], owner: str) -> dict[str, Any]:
        """Check the whole definition, write the workflow and every step in one transaction (the
        first steps PENDING, the rest WAITING), then publish the first steps."""
        definition = parse(body, self.registry, self.max_steps)
        workflow_id = uuid.uuid4()
        rows = [self._step_row(workflow_id, step, owner) for step in definition.steps]

        values = {
            "id": workflow_id, "name": definition.name, "owner": owner, "status": WorkflowStatus.RUNNING,
            "input": definition.input, "steps": [step.stored() for step in definition.steps],
            "on_failure": definition.on_failure,
        }  # fmt: skip

        def write(conn: Any) -> Any:
            workflow_model.insert(conn, values)
            conn.execute(task_model.tasks.insert(), rows)
            return task_model.database_now(conn)

        created_at = self.db.run(write)
        try:
            for step, row in zip(definition.steps, rows, strict=True):
                if row["status"] == TaskStatus.PENDING:
                    self.broker.enqueue(
                        Message(
                            step.task_type, row["id"], row["parameters"], row["priority"], None, headers()
                        )
                    )
        except BrokerUnavailable:
            self._forget(workflow_id)
            raise
        for row in rows:
            self.endings.watch.announce(row["id"], row["status"], LIST_STREAMS)
        # Answered as written (a first step may have run by now: GET tells).
        times = {"created_at": created_at, "updated_at": created_at, "completed_at": None, "error": None}
        written = {row["step"]: SimpleNamespace(**row, result=None, error=None, attempts=0) for row in rows}
        return workflow_resource(SimpleNamespace(**values, **times), written)

    @staticmethod
    def _step_row(workflow_id: uuid.UUID, step: Step, owner: str) -> dict[str, Any]:
        """A first step is written ready to run (a root names no other step: its parameters were
        checked whole); the rest as submitted, until their release."""
        root = not step.after
        return {
            "id": uuid.uuid4(), "name": step.task_type.name,
            "parameters": step.ready if root else step.parameters,
            "status": TaskStatus.PENDING if root else TaskStatus.WAITING, "queue": step.task_type.queue,
            "priority": step.task_type.priority, "owner": owner, "workflow_id": workflow_id, "step": step.id,
            "waiting_parents": None if root else len(step.after),
        }  # fmt: skip

    def _forget(self, workflow_id: uuid.UUID) -> None:
        """A workflow whose first steps the broker did not take: gone, as a task's row would be."""

        def forget(conn: Any) -> None:
            conn.execute(task_model.tasks.delete().where(task_model.tasks.c.workflow_id == workflow_id))
            conn.execute(
                workflow_model.workflows.delete().where(workflow_model.workflows.c.id == workflow_id)
            )

        self.db.run(forget)

    def get(self, workflow_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        def read(conn: Any) -> tuple[Any, dict[str, Any]] | None:
            workflow = workflow_model.get(conn, workflow_id, owner)
            return None if workflow is None else (workflow, workflow_model.steps(conn, workflow_id))

        found = self.db.run(read)
        if found is None:
            raise WorkflowNotFound(f"No workflow {workflow_id}.", {"id": ["Not found."]})
        return workflow_resource(*found)

    def list(
        self,
        limit: int,
        cursor: str | None,
        owner: str | None,
        status: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        after = decode_cursor(cursor) if cursor else None
        rows = self.db.run(lambda c: workflow_model.list_page(c, limit + 1, owner, status, name, after))
        page = rows[:limit]
        more = len(rows) > limit
        return {
            "workflows": [workflow_resource(row, None) for row in page],
            "next_cursor": encode_cursor(page[-1]) if more else None,
        }

    def cancel(self, workflow_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        """CANCELLED: steps not started end CANCELLED, running ones are asked to stop; nothing is
        released after the commit. A workflow already ended is answered as it is."""
        if not self.endings.cancel_workflow(workflow_id, owner):
            raise WorkflowNotFound(f"No workflow {workflow_id}.", {"id": ["Not found."]})
        return self.get(workflow_id, owner)


def workflow_resource(workflow: Any, steps: Mapping[str, Any] | None) -> dict[str, Any]:
    """The v1 workflow resource; with `steps`, each step's state."""
    resource = {
        "id": str(workflow.id), "name": workflow.name, "status": workflow.status, "input": workflow.input,
        "on_failure": workflow.on_failure, "error": workflow.error, "owner": workflow.owner,
        "created_at": _time(workflow.created_at), "updated_at": _time(workflow.updated_at),
        "completed_at": _time(workflow.completed_at),
    }  # fmt: skip
    if steps is not None:
        resource["steps"] = [_step_resource(spec, steps.get(spec["id"]), steps) for spec in workflow.steps]
    return resource


def _step_resource(spec: Mapping[str, Any], row: Any, rows: Mapping[str, Any]) -> dict[str, Any]:
    waiting = [p for p in spec["after"] if p in rows and rows[p].status not in task_model.TERMINAL]
    return {
        "id": spec["id"], "task": spec["task"], "after": spec["after"], "join": spec["join"],
        "task_id": str(row.id) if row is not None else None,
        "status": row.status if row is not None else None,
        "attempts": row.attempts if row is not None else 0, "result": row.result if row is not None else None,
        "error": row.error if row is not None else None,
        "waiting_for": waiting if row is not None and row.status == TaskStatus.WAITING else [],
    }  # fmt: skip


def _time(value: Any) -> str | None:
    return None if value is None else utc_iso(value)
