"""The one way a task ends, whoever ends it: the worker's outcome, the API's cancel, the sweep's give-up.

Each ending is one write of the terminal status (which only succeeds once per task) and, in the
same transaction, the task's webhook delivery; then, after the commit, one step that counts it in
`tasker_tasks_finished_total`, caches its output, announces it to waiting readers and queues the
delivery's first attempt. Whatever must happen when a task ends hooks into `Endings.after_commit`.

A workflow's step ends the same way, and in the same transaction its workflow moves on
(app/core/workflows/release.py): children released, or ended in a cascade, each of those ends
written here too; after the commit the released steps are published.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Row

from app.core import metrics
from app.core.broker import Message
from app.core.cache_manager import CacheManager
from app.core.concurrency import Admissions
from app.core.database_manager import DatabaseManager
from app.core.live.changes import Watch
from app.core.resources import task_output
from app.core.webhooks import Deliveries
from app.core.workflows import Workflows
from app.core.workflows.release import FollowUp
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models import workflow as workflow_model
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus

logger = logging.getLogger(__name__)

# A terminal write: the row's ENDED columns (app/models/task.py) if it ended the task, else None.
Write = Callable[[Connection], Row | None]


@dataclass(frozen=True)
class Ending:
    """A task that has just ended, as its terminal write left it."""

    task_id: uuid.UUID
    name: str
    owner: str
    status: TaskStatus
    output: dict[str, Any]  # what /get-task-output answers from now on
    delivery: uuid.UUID | None  # its webhook delivery, written in the same transaction


class Endings:
    def __init__(
        self,
        db: DatabaseManager,
        cache: CacheManager,
        watch: Watch,
        deliveries: Deliveries | None = None,
        workflows: Workflows | None = None,
        admissions: Admissions | None = None,
    ):
        self.admissions = admissions  # concurrency keys' slots (app/core/concurrency.py)
        self.db = db
        self.cache = cache
        self.watch = watch
        self.deliveries = deliveries
        self.workflows = workflows

    def finish(
        self,
        task_id: uuid.UUID,
        status: TaskStatus,
        result: Any = None,
        error: str | None = None,
        webhook: bool | None = None,
    ) -> Ending | None:
        """A run's outcome. `webhook`: whether its ending writes more than its row, a webhook's
        delivery or a workflow's next steps (its claim said; None: not known). If not, the outcome
        is one statement; otherwise the rest is written with it, in one transaction."""
        write: Write = lambda c: task_model.finish(c, task_id, status, result, error)  # noqa: E731
        return self.end(task_id, status, write, result, error, webhook is not False)

    def cancel(self, task_id: uuid.UUID, owner: str | None) -> Ending | None:
        """CANCELLED at once if the task has not started (None otherwise)."""
        write: Write = lambda c: task_model.cancel(c, task_id, owner)  # noqa: E731
        return self.end(task_id, TaskStatus.CANCELLED, write)

    def give_up(self, task_id: uuid.UUID, attempts: int, error: str) -> Ending | None:
        """FAILED by the recovery sweep, if the row is still the STARTED attempt it saw."""
        write: Write = lambda c: task_model.fail_abandoned(c, task_id, attempts, error)  # noqa: E731
        return self.end(task_id, TaskStatus.FAILED, write, None, error)

    def end(
        self,
        task_id: uuid.UUID,
        status: TaskStatus,
        write: Write,
        result: Any = None,
        error: str | None = None,
        may_deliver: bool = True,
    ) -> Ending | None:
        """Run the terminal `write` (with the delivery and the workflow's next steps, in one
        transaction), then `after_commit`."""

        def ended(conn: Connection) -> tuple[Ending, FollowUp | None, list[Message]] | None:
            # Locks before the row, in the order every writer takes them: its key's admissions,
            # then its workflow.
            workflow_id, key = task_model.ending_facts(conn, task_id) if may_deliver else (None, None)
            if key is not None and self.admissions is not None:
                self.admissions.lock(conn, key)
            if workflow_id is not None and self.workflows is not None:
                workflow_model.lock(conn, workflow_id)
            row = write(conn)
            if row is None:
                return None
            ending = self._ending(conn, task_id, row, status, result, error, may_deliver)
            follow = None
            if row.workflow_id is not None and self.workflows is not None:
                follow = self.workflows.step_ended(conn, row.workflow_id, row.step, status, self._end_step)
            admitted = []  # its slot is free: the next tasks of its key, admitted in this transaction
            if row.concurrency_key is not None and self.admissions is not None:
                admitted = self.admissions.admit(conn, row.concurrency_key)
            return ending, follow, admitted

        if may_deliver:
            outcome = self.db.run(ended)
        else:
            outcome = self.db.run_statement(ended)  # one statement: no transaction of its own
        if outcome is None:
            logger.info("task %s already ended; %s not recorded", task_id, status)
            return None
        ending, follow, admitted = outcome
        self.after_commit(ending)
        if follow is not None:
            self.follow_up(follow)
        if admitted and self.admissions is not None:
            self.admissions.publish(admitted)
        return ending

    def start_maps(self, conn: Connection, workflow: Any, keys: list[str]) -> FollowUp:
        """A new workflow's first map steps expanded in the transaction that writes it."""
        assert self.workflows is not None
        return self.workflows.release.start(conn, workflow, keys, self._end_step)

    def follow_up(self, follow: FollowUp, publish: bool = True) -> None:
        """After the commit: the steps a cascade ended, then (with `publish`) the released ones."""
        for other in follow.endings:
            self.after_commit(other)
        if self.workflows is not None:
            self.workflows.after_commit(follow, publish)
        if follow.delivery is not None and self.deliveries is not None:
            self.deliveries.queue_first_attempt(follow.delivery)

    def _ending(
        self, conn: Connection, task_id: uuid.UUID, row: Row, status: TaskStatus, result: Any,
        error: str | None, may_deliver: bool,
    ) -> Ending:  # fmt: skip
        """The task's Ending, its webhook delivery written with it."""
        delivery = None
        if may_deliver and self.deliveries is not None:
            delivery = webhook_model.record(conn, task_id, row.owner, row.webhook, status)
        output = task_output(status, result, error, row.progress, row.progress_message)
        return Ending(task_id, row.name, row.owner, status, output, delivery)

    def cancel_workflow(self, workflow_id: uuid.UUID, owner: str | None) -> bool:
        """The workflow CANCELLED and, in the same transaction, its steps not started; running ones
        are asked to stop. False when there is no such workflow (of `owner`)."""

        delivery: list[uuid.UUID | None] = [None]

        def cancel(conn: Connection) -> list[Ending] | None:
            workflow = workflow_model.lock(conn, workflow_id)
            if workflow is None or (owner is not None and workflow.owner != owner):
                return None
            if not workflow_model.finish(conn, workflow_id, WorkflowStatus.CANCELLED, "cancelled on request"):
                return []  # it had ended already
            delivery[0] = webhook_model.record_workflow(
                conn, workflow_id, workflow.owner, workflow.webhook, WorkflowStatus.CANCELLED
            )
            endings = []
            for row in workflow_model.unfinished(conn, workflow_id):
                if row.status == TaskStatus.STARTED:
                    task_model.request_cancel(conn, row.id, reason="its workflow was cancelled")
                elif ending := self._end_step(
                    conn, row.id, TaskStatus.CANCELLED, "its workflow was cancelled"
                ):
                    endings.append(ending)
            return endings

        endings = self.db.run(cancel)
        for ending in endings or ():
            self.after_commit(ending)
        if endings is not None and self.workflows is not None:
            self.workflows.ended(workflow_id, WorkflowStatus.CANCELLED)
        if delivery[0] is not None and self.deliveries is not None:
            self.deliveries.queue_first_attempt(delivery[0])
        return endings is not None

    def resume_workflow(self, workflow_id: uuid.UUID, owner: str | None, chosen: list[str] | None) -> bool:
        """An ended workflow running again (app/core/workflows/resume.py): False when there is no
        such workflow (of `owner`)."""
        assert self.workflows is not None
        release = self.workflows.release

        def resume(conn: Connection) -> FollowUp | None:
            workflow = workflow_model.lock(conn, workflow_id)
            if workflow is None or (owner is not None and workflow.owner != owner):
                return None
            return release.resume(conn, workflow, chosen, self._end_step)

        follow = self.db.run(resume)
        if follow is None:
            return False
        self.follow_up(follow)
        return True

    def repair_step(self, workflow_id: uuid.UUID, key: str) -> bool:
        """Decide a WAITING step whose parents have all ended (the recovery sweep's repair): True
        if it was one."""
        if self.workflows is None:
            return False
        workflows = self.workflows
        follow = self.db.run(lambda conn: workflows.repair(conn, workflow_id, key, self._end_step))
        if follow is None:
            return False
        self.follow_up(follow)
        return True

    def end_in(
        self, conn: Connection, task_id: uuid.UUID, status: TaskStatus, error: str | None
    ) -> Ending | None:
        """A task ended inside the caller's transaction (a submit's strategy cancelling the tasks of
        its concurrency key); the caller runs `after_commit` with the Ending once it commits."""
        return self._end_step(conn, task_id, status, error)

    def _end_step(
        self, conn: Connection, task_id: uuid.UUID, status: TaskStatus, error: str | None, result: Any = None
    ) -> Ending | None:
        """A step its workflow ends (a cascade, or a map whose last item ended), in the transaction
        of the ending that caused it."""
        row = task_model.finish(conn, task_id, status, result, error)
        return None if row is None else self._ending(conn, task_id, row, status, result, error, True)

    def after_commit(self, ending: Ending) -> None:
        """Counted once (only the write that ended the task gets here), cached and announced in one
        round trip to Redis, and its webhook delivery queued."""
        metrics.TASKS_FINISHED.labels(ending.name, ending.status.value).inc()
        announcement = self.watch.announcement(ending.task_id, ending.status)
        self.cache.set_output(ending.task_id, ending.owner, ending.output, publish=announcement)
        if ending.delivery is not None and self.deliveries is not None:
            self.deliveries.queue_first_attempt(ending.delivery)
