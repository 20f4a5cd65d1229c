"""What a step's ending does to its workflow, inside the transaction of its terminal write.

The workflow's row is locked first, so the endings of one workflow's steps take turns. Each child
of the ended step has one parent fewer to wait for (`waiting_parents`); only the write that brings
it to 0 decides it, never a look at whether "all parents are done" (Celery's chord bug under READ
COMMITTED). A child whose parents allow it is released (WAITING -> PENDING, its references
resolved and checked against its type's schema) and published after the commit; one they do not
allow ends CANCELLED ("upstream step X failed"), and its own children are decided the same way.
With `fail_fast` a FAILED step cancels every step not started and asks running ones to stop. When
no step is left unfinished, the workflow ends: FAILED if a step failed, CANCELLED if one was
cancelled, else COMPLETED.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Row

from app.core.broker import Message
from app.core.errors import InvalidInput
from app.core.ports import Registry
from app.core.workflows import refs
from app.models import task as task_model
from app.models import workflow as workflow_model
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus

# Ends one step (a terminal write and what goes with it, in this transaction): an Ending or None.
EndStep = Callable[[Connection, uuid.UUID, TaskStatus, str], Any]


@dataclass
class FollowUp:
    """What the transaction decided, for after its commit."""

    endings: list[Any] = field(default_factory=list)  # steps the cascade ended
    released: list[Message] = field(default_factory=list)  # steps to publish
    finished: WorkflowStatus | None = None  # the workflow's own ending, if this was it


class StepRelease:
    def __init__(self, registry: Registry):
        self.registry = registry

    def step_ended(
        self, conn: Connection, workflow_id: uuid.UUID, key: str, status: TaskStatus, end_step: EndStep
    ) -> FollowUp:
        follow = FollowUp()
        workflow = workflow_model.lock(conn, workflow_id)
        if workflow is None or workflow.status != WorkflowStatus.RUNNING:
            return follow
        self._settle(conn, workflow, [(key, status)], end_step, follow)
        return follow

    def repair(
        self, conn: Connection, workflow_id: uuid.UUID, key: str, end_step: EndStep
    ) -> FollowUp | None:
        """A WAITING step whose parents have all ended (which only a bug leaves behind): decided
        now, as its last parent's ending should have. None when it rightly waits."""
        workflow = workflow_model.lock(conn, workflow_id)
        rows = workflow_model.steps(conn, workflow_id) if workflow is not None else {}
        row = rows.get(key)
        if workflow is None or row is None or row.status != TaskStatus.WAITING:
            return None
        follow = FollowUp()
        if workflow.status != WorkflowStatus.RUNNING:
            why = f"its workflow is {workflow.status.lower()}"
            self._end(conn, row, TaskStatus.CANCELLED, why, end_step, follow)
            return follow
        spec = next(spec for spec in workflow.steps if spec["id"] == key)
        if any(rows[parent].status not in task_model.TERMINAL for parent in spec["after"]):
            return None
        outcome = self._decide(conn, workflow, spec, end_step, follow)
        self._settle(conn, workflow, [(key, outcome)] if outcome else [], end_step, follow)
        return follow

    def _settle(
        self,
        conn: Connection,
        workflow: Row,
        ended: list[tuple[str, TaskStatus]],
        end_step: EndStep,
        follow: FollowUp,
    ) -> None:
        """Each ended step's children decided, and theirs in turn; then the workflow's own end."""
        children = {
            spec["id"]: [s["id"] for s in workflow.steps if spec["id"] in s["after"]]
            for spec in workflow.steps
        }
        specs = {spec["id"]: spec for spec in workflow.steps}
        while ended:
            done, done_status = ended.pop(0)
            if done_status == TaskStatus.FAILED and workflow.on_failure == "fail_fast":
                self._fail_fast(conn, workflow, done, end_step, follow)
                break
            for child in workflow_model.lower_waiting(conn, workflow.id, children[done]):
                outcome = self._decide(conn, workflow, specs[child], end_step, follow)
                if outcome is not None:
                    ended.append((child, outcome))
        self._finish_if_done(conn, workflow, follow)

    def _decide(
        self, conn: Connection, workflow: Row, spec: dict[str, Any], end_step: EndStep, follow: FollowUp
    ) -> TaskStatus | None:
        """Release the step whose parents have all ended, or end it: the status it ended with, or
        None when it was released."""
        rows = workflow_model.steps(conn, workflow.id)
        row = rows[spec["id"]]
        parents = [rows[parent] for parent in spec["after"]]
        if spec["join"] == "all_success":
            stopped = next((p for p in parents if p.status != TaskStatus.COMPLETED), None)
            if stopped is not None:
                ended = "failed" if stopped.status == TaskStatus.FAILED else "was cancelled"
                why = f"upstream step {stopped.step} {ended}"
                return self._end(conn, row, TaskStatus.CANCELLED, why, end_step, follow)

        def value_of(step: str) -> Any:
            other = rows[step]
            if spec["join"] == "all_done":
                return {"status": other.status, "result": other.result, "error": other.error}
            return other.result

        task_type = self.registry.resolve(spec["task"], "task")
        try:
            resolved = refs.resolve(spec["parameters"], value_of, workflow.input)
            clean = task_type.validate(resolved, "parameters")
        except refs.Unresolved as exc:
            return self._end(conn, row, TaskStatus.FAILED, f"{exc}.", end_step, follow)
        except InvalidInput as exc:
            return self._end(
                conn,
                row,
                TaskStatus.FAILED,
                f"Its parameters, once resolved: {exc.message}",
                end_step,
                follow,
            )
        if workflow_model.release(conn, row.id, clean):
            follow.released.append(Message(task_type, row.id, clean, row.priority, row.timeout_seconds))
        return None

    @staticmethod
    def _end(
        conn: Connection, row: Row, status: TaskStatus, why: str, end_step: EndStep, follow: FollowUp
    ) -> TaskStatus | None:
        ending = end_step(conn, row.id, status, why)
        if ending is None:
            return None
        follow.endings.append(ending)
        return status

    @staticmethod
    def _fail_fast(conn: Connection, workflow: Row, failed: str, end_step: EndStep, follow: FollowUp) -> None:
        """Every step not started ends CANCELLED; running ones are asked to stop."""
        why = f"upstream step {failed} failed"
        for row in workflow_model.unfinished(conn, workflow.id):
            if row.status == TaskStatus.STARTED:
                task_model.request_cancel(conn, row.id)
                continue
            ending = end_step(conn, row.id, TaskStatus.CANCELLED, why)
            if ending is not None:
                follow.endings.append(ending)

    @staticmethod
    def _finish_if_done(conn: Connection, workflow: Row, follow: FollowUp) -> None:
        if workflow_model.unfinished(conn, workflow.id):
            return
        rows = workflow_model.steps(conn, workflow.id).values()
        failed = next((r for r in rows if r.status == TaskStatus.FAILED), None)
        cancelled = next((r for r in rows if r.status == TaskStatus.CANCELLED), None)
        if failed is not None:
            status, error = WorkflowStatus.FAILED, f"step {failed.step} failed: {failed.error}"
        elif cancelled is not None:
            status, error = (
                WorkflowStatus.CANCELLED,
                f"step {cancelled.step} was cancelled: {cancelled.error}",
            )
        else:
            status, error = WorkflowStatus.COMPLETED, None
        if workflow_model.finish(conn, workflow.id, status, error):
            follow.finished = status
