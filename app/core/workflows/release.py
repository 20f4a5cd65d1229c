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
from app.core.errors import Conflict, InvalidInput
from app.core.ports import Registry
from app.core.workflows import maps, refs, resume
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models import workflow as workflow_model
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus

# Ends one step (a terminal write and what goes with it, in this transaction): an Ending or None.
# Its arguments: the connection, the step's task id, its status, its error, its result.
EndStep = Callable[[Connection, uuid.UUID, TaskStatus, str | None, Any], Any]


@dataclass
class FollowUp:
    """What the transaction decided, for after its commit."""

    endings: list[Any] = field(default_factory=list)  # steps the cascade ended
    released: list[Message] = field(default_factory=list)  # steps to publish
    finished: WorkflowStatus | None = None  # the workflow's own ending, if this was it
    workflow_id: uuid.UUID | None = None  # the workflow that ended
    delivery: uuid.UUID | None = None  # its webhook delivery, written with its ending


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

    def start(self, conn: Connection, workflow: Any, keys: list[str], end_step: EndStep) -> FollowUp:
        """A new workflow's first map steps (over its input) expanded as it is written; a map over
        an empty array ends at once, and its children are decided."""
        follow = FollowUp()
        specs = {spec["id"]: spec for spec in workflow.steps}
        ended = []
        for key in keys:
            if (status := self._decide(conn, workflow, specs[key], end_step, follow)) is not None:
                ended.append((key, status))
        self._settle(conn, workflow, ended, end_step, follow)
        return follow

    def resume(
        self, conn: Connection, workflow: Row, chosen: list[str] | None, end_step: EndStep
    ) -> FollowUp:
        """An ended workflow running again (app/core/workflows/resume.py says what runs): new rows
        with retry_of for each step run again, the workflow RUNNING, and the steps whose parents
        are all kept decided now. Conflict while it runs."""
        if workflow.status == WorkflowStatus.RUNNING:
            raise Conflict(
                "The workflow is running: resume it once it has ended (or cancel it first).",
                {"status": [f"Resume takes an ended workflow; this one is {workflow.status}."]},
            )
        rows = workflow_model.steps(conn, workflow.id)
        plan = resume.plan(workflow.steps, rows, chosen)
        specs = {spec["id"]: spec for spec in workflow.steps}
        again = set(plan.fresh) | set(plan.items)
        workflow_model.retire(conn, [row.id for row in plan.retired])
        new_rows = []
        for key in plan.fresh:
            waiting = sum(1 for parent in specs[key]["after"] if parent in again)
            new_rows.append(maps.again(rows[key], specs[key]["parameters"], TaskStatus.WAITING, waiting))
        for key, items in plan.items.items():
            new_rows.append(maps.again(rows[key], None, TaskStatus.WAITING, len(items)))
            window = specs[key]["map"].get("max_parallel") or len(items)
            parameters = workflow_model.parameters_of(conn, [row.id for row in items])
            new_rows += maps.items_again(items, parameters, window)
        workflow_model.insert_steps(conn, new_rows)
        workflow_model.reopen(conn, workflow.id)
        follow = FollowUp()
        for row in new_rows:
            if row["status"] == TaskStatus.PENDING:
                task_type = self.registry.resolve(row["name"], "task")
                follow.released.append(
                    Message(task_type, row["id"], row["parameters"], row["priority"], row["timeout_seconds"])
                )
        ready = [key for key in plan.fresh if not any(p in again for p in specs[key]["after"])]
        reopened = workflow_model.lock(conn, workflow.id)
        ended = []
        for key in ready:
            if (status := self._decide(conn, reopened, specs[key], end_step, follow)) is not None:
                ended.append((key, status))
        self._settle(conn, reopened, ended, end_step, follow)
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
        if spec.get("map") and (items := workflow_model.items(conn, workflow_id, key)):
            return self._repair_map(conn, workflow, spec, items, end_step)
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
            if (item := maps.parse_item(done)) is not None:
                if (head_status := self._item_ended(conn, workflow, item[0], end_step, follow)) is not None:
                    ended.append((item[0], head_status))
                continue
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

        if spec.get("map"):
            return self._expand(conn, workflow, spec, row, value_of, end_step, follow)
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

    def _expand(
        self, conn: Connection, workflow: Row, spec: dict[str, Any], head: Row,
        value_of: Callable[[str], Any], end_step: EndStep, follow: FollowUp,
    ) -> TaskStatus | None:  # fmt: skip
        """A map step released: its items written (or the step ended: FAILED when its array or an
        item's parameters are wrong, COMPLETED at once when the array is empty)."""
        fan_out = spec["map"]
        pointer = refs.pointer_of(fan_out["over"])
        task_type = self.registry.resolve(spec["task"], "task")
        parameters: list[Any] = []
        try:
            items = refs.resolve(fan_out["over"], value_of, workflow.input)
            if problem := maps.over_problem(items, pointer, fan_out["max_items"]):
                return self._end(conn, head, TaskStatus.FAILED, f"{problem}.", end_step, follow)
            for item in items:
                resolved = refs.resolve(spec["parameters"], value_of, workflow.input, item)
                parameters.append(task_type.validate(resolved, "parameters"))
        except refs.Unresolved as exc:
            return self._end(conn, head, TaskStatus.FAILED, f"map over {pointer}: {exc}.", end_step, follow)
        except InvalidInput as exc:
            why = f"Item {len(parameters)}'s parameters, once resolved: {exc.message}"
            return self._end(conn, head, TaskStatus.FAILED, why, end_step, follow)
        if not parameters:
            return self._end(conn, head, TaskStatus.COMPLETED, None, end_step, follow, [])
        rows = maps.item_rows(head, parameters, fan_out.get("max_parallel"))
        workflow_model.expand(conn, head.id, rows)
        follow.released += [
            Message(task_type, row["id"], row["parameters"], row["priority"], row["timeout_seconds"])
            for row in rows
            if row["status"] == TaskStatus.PENDING
        ]
        return None

    def _item_ended(
        self, conn: Connection, workflow: Row, key: str, end_step: EndStep, follow: FollowUp
    ) -> TaskStatus | None:
        """An item of map `key` ended: the next one waiting its turn released; the map ended when
        this was its last item (the status it ended with)."""
        task_type = self.registry.resolve(next(s["task"] for s in workflow.steps if s["id"] == key), "task")
        for row in workflow_model.lower_siblings(conn, workflow.id, key):
            self._release_item(conn, task_type, row.id, follow)
        if not workflow_model.lower_waiting(conn, workflow.id, [key]):
            return None
        return self._end_map(conn, workflow, key, end_step, follow)

    def _end_map(
        self, conn: Connection, workflow: Row, key: str, end_step: EndStep, follow: FollowUp
    ) -> TaskStatus | None:
        head = workflow_model.steps(conn, workflow.id)[key]
        status, results, error = maps.outcome(maps.in_order(workflow_model.items(conn, workflow.id, key)))
        return self._end(conn, head, status, error, end_step, follow, results)

    def _repair_map(
        self, conn: Connection, workflow: Row, spec: dict[str, Any], items: list[Row], end_step: EndStep
    ) -> FollowUp | None:
        """An expanded map's head left WAITING: ended if its items all have; else its waiting items
        released while fewer than max_parallel run. None when nothing was wrong."""
        follow = FollowUp()
        # Items a paused queue holds, or waiting under a rate limit, count as running: they are
        # published when the queue resumes or their turn comes.
        waiting = [
            row
            for row in maps.in_order(items)
            if row.status == TaskStatus.WAITING and row.paused_queue is None and row.rate_limit is None
        ]
        if not any(row.status not in task_model.TERMINAL for row in items):
            if (status := self._end_map(conn, workflow, spec["id"], end_step, follow)) is not None:
                self._settle(conn, workflow, [(spec["id"], status)], end_step, follow)
            return follow
        running = sum(1 for row in items if row.status not in task_model.TERMINAL) - len(waiting)
        free = (spec["map"].get("max_parallel") or len(items)) - running
        task_type = self.registry.resolve(spec["task"], "task")
        for row in waiting[: max(free, 0)]:
            self._release_item(conn, task_type, row.id, follow)
        return follow if follow.released else None

    @staticmethod
    def _release_item(conn: Connection, task_type: Any, task_id: uuid.UUID, follow: FollowUp) -> None:
        """A map's item whose turn has come: PENDING, to publish (its parameters were resolved when
        the map expanded)."""
        row = workflow_model.release_item(conn, task_id)
        if row is not None:
            follow.released.append(
                Message(task_type, task_id, row.parameters, row.priority, row.timeout_seconds)
            )

    @staticmethod
    def _end(
        conn: Connection, row: Row, status: TaskStatus, why: str | None, end_step: EndStep, follow: FollowUp,
        result: Any = None,
    ) -> TaskStatus | None:  # fmt: skip
        ending = end_step(conn, row.id, status, why, result)
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
                task_model.request_cancel(conn, row.id, reason=why)
                continue
            ending = end_step(conn, row.id, TaskStatus.CANCELLED, why, None)
            if ending is not None:
                follow.endings.append(ending)

    @staticmethod
    def _finish_if_done(conn: Connection, workflow: Row, follow: FollowUp) -> None:
        if workflow_model.any_unfinished(conn, workflow.id):
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
            follow.finished, follow.workflow_id = status, workflow.id
            follow.delivery = webhook_model.record_workflow(
                conn, workflow.id, workflow.owner, workflow.webhook, status
            )
