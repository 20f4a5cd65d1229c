"""The use cases behind /api/v1/workflows: submit, read, list and cancel."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from app.core.broker import Broker, Message, headers
from app.core.database_manager import DatabaseManager
from app.core.endings import Endings
from app.core.errors import BrokerUnavailable, Conflict, NotFound
from app.core.live.changes import LIST_STREAMS
from app.core.ports import Registry
from app.core.quotas import UnfinishedTasks
from app.core.resources import decode_cursor, encode_cursor
from app.core.task_manager import IDEMPOTENCY_KEY_HOURS
from app.core.workflows.definition import Limits, Step, parse
from app.core.workflows.release import FollowUp
from app.core.workflows.resource import workflow_resource
from app.core.workflows.templates import Templates
from app.models import task as task_model
from app.models import workflow as workflow_model
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus

ENDED = tuple(status for status in WorkflowStatus if status != WorkflowStatus.RUNNING)


class WorkflowNotFound(NotFound):
    """No workflow of that id (of the caller's)."""


class WorkflowManager:
    """Every method takes the caller's `owner`: another owner's workflow is not found, exactly like
    an unknown id; `owner=None` (an admin) reaches every one."""

    def __init__(
        self, endings: Endings, registry: Registry, broker: Broker, limits: Limits, quota: UnfinishedTasks
    ):
        self.endings = endings
        self.quota = quota  # a workflow is admitted as many tasks as it declares steps
        self.db: DatabaseManager = endings.db
        self.registry = registry
        self.broker = broker
        self.limits = limits
        self.templates = Templates(self.db, registry, limits)

    def submit(
        self, body: Mapping[str, Any], owner: str, idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Check the whole definition, write the workflow and every step in one transaction (the
        first steps PENDING, a first map step's items with them, the rest WAITING), then publish
        the first steps: the workflow, and whether this call made it (under an Idempotency-Key
        used before with the same body, it did not; with another body: Conflict)."""
        definition = parse(self._definition(body, owner), self.registry, self.limits)
        workflow_id = uuid.uuid4()
        rows = [self._step_row(workflow_id, step, owner) for step in definition.steps]
        maps = [step.id for step in definition.roots() if step.map is not None]
        values = {
            "id": workflow_id, "name": definition.name, "owner": owner, "status": WorkflowStatus.RUNNING,
            "input": definition.input, "steps": [step.stored() for step in definition.steps],
            "on_failure": definition.on_failure, "idempotency_key": idempotency_key,
            "request_hash": _request_hash(body) if idempotency_key else None,
            "webhook": self._webhook(body.get("webhook")),
        }  # fmt: skip
        # The clock read first, in its own transaction (SQLite may refuse one that reads, then writes).
        expired = None
        if idempotency_key is not None:
            expired = self.db.run(task_model.database_now) - timedelta(hours=IDEMPOTENCY_KEY_HOURS)

        def write(conn: Any) -> tuple[Any, FollowUp]:
            if idempotency_key is not None:
                workflow_model.release_idempotency_key(conn, owner, idempotency_key, expired)
            workflow_model.insert(conn, values)
            workflow_model.insert_steps(conn, rows)
            follow = self.endings.start_maps(conn, SimpleNamespace(**values), maps) if maps else FollowUp()
            return task_model.database_now(conn), follow

        self.quota.admit(owner, len(rows))
        try:
            created_at, follow = self.db.run(write)
        except sa.exc.IntegrityError:
            self.quota.release(owner, len(rows))
            if idempotency_key is None:
                raise
            return self._replay(owner, idempotency_key, values["request_hash"]), False
        except BaseException:
            self.quota.release(owner, len(rows))
            raise
        self._publish(definition.steps, rows, follow)
        if maps:
            return self.get(workflow_id, None), True  # with its items
        # Answered as written (a first step may have run by now: GET tells).
        times = {"created_at": created_at, "updated_at": created_at, "completed_at": None, "error": None}
        written = {row["step"]: SimpleNamespace(**row, result=None, error=None, attempts=0) for row in rows}
        return workflow_resource(SimpleNamespace(**values, **times), written), True

    def _webhook(self, webhook: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """Where the workflow's ending is delivered, checked as a task's webhook is."""
        deliveries = self.endings.deliveries
        if webhook is None or deliveries is None:
            return None
        return deliveries.check(webhook)

    def _definition(self, body: Mapping[str, Any], owner: str) -> Mapping[str, Any]:
        """The body itself, or the definition of the template it names, with its input checked."""
        if body.get("template") is None:
            return body
        return self.templates.workflow(owner, body["template"], body.get("input") or {})

    def _publish(self, steps: tuple[Step, ...], rows: list[dict[str, Any]], follow: FollowUp) -> None:
        """A new workflow's first steps published; if the broker takes none, the workflow is gone."""
        messages = [
            Message(step.task_type, row["id"], row["parameters"], row["priority"], None, headers())
            for step, row in zip(steps, rows, strict=True)
            if row["status"] == TaskStatus.PENDING
        ]
        try:
            for message in messages + follow.released:
                self.broker.enqueue(message)
        except BrokerUnavailable:
            self._forget(rows[0]["workflow_id"])
            raise
        for row in rows:
            self.endings.watch.announce(row["id"], row["status"], LIST_STREAMS)
        self.endings.follow_up(follow, publish=False)

    def _replay(self, owner: str, key: str, request_hash: str) -> dict[str, Any]:
        """The workflow an earlier submit under this key made, if it had the same body."""
        earlier = self.db.run(lambda conn: workflow_model.by_idempotency_key(conn, owner, key))
        if earlier is None:  # the earlier one was removed meanwhile (its publish failed)
            raise Conflict("That Idempotency-Key is in use by a request that failed; retry shortly.")
        if earlier.request_hash != request_hash:
            raise Conflict(
                "This Idempotency-Key was already used with a different request.",
                {"idempotency_key": key, "workflow_id": str(earlier.id)},
            )
        return self.get(earlier.id, owner)

    @staticmethod
    def _step_row(workflow_id: uuid.UUID, step: Step, owner: str) -> dict[str, Any]:
        """A first step is written ready to run (a root names no other step: its parameters were
        checked whole); the rest as submitted, until their release. A first map step is expanded
        in the same transaction."""
        ready = not step.after and step.map is None
        return {
            "id": uuid.uuid4(), "name": step.task_type.name,
            "parameters": step.ready if ready else step.parameters,
            "status": TaskStatus.PENDING if ready else TaskStatus.WAITING, "queue": step.task_type.queue,
            "priority": step.task_type.priority, "owner": owner, "workflow_id": workflow_id, "step": step.id,
            "waiting_parents": None if ready else len(step.after),
        }  # fmt: skip

    def _forget(self, workflow_id: uuid.UUID) -> None:
        """A workflow whose first steps the broker did not take: gone, as a task's row would be."""

        def forget(conn: Any) -> None:
            conn.execute(task_model.tasks.delete().where(task_model.tasks.c.workflow_id == workflow_id))
            conn.execute(
                workflow_model.workflows.delete().where(workflow_model.workflows.c.id == workflow_id)
            )

        self.db.run(forget)

    def get(
        self,
        workflow_id: uuid.UUID,
        owner: str | None,
        wait_seconds: float = 0,
        until: Callable[[threading.Event, float], object] | None = None,
    ) -> dict[str, Any]:
        """The workflow and its steps; with `wait_seconds`, as soon as it has ended or when the
        wait ends (`until(event, seconds)` waits, as for a task's ?wait=)."""
        if wait_seconds <= 0:
            return self._read(workflow_id, owner)
        with self.endings.watch.watching(workflow_id, ENDED) as ended:
            workflow = self._read(workflow_id, owner)
            if workflow["status"] in ENDED:
                return workflow
            (until or (lambda event, seconds: event.wait(seconds)))(ended, wait_seconds)
        return self._read(workflow_id, owner)

    def _read(self, workflow_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
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

    def resume(self, workflow_id: uuid.UUID, owner: str | None, steps: list[str] | None) -> dict[str, Any]:
        """RUNNING again: the FAILED and CANCELLED steps and map items (or `steps`) and every step
        after them run as new rows; every other result is kept. Conflict while it runs."""
        if not self.endings.resume_workflow(workflow_id, owner, steps):
            raise WorkflowNotFound(f"No workflow {workflow_id}.", {"id": ["Not found."]})
        return self.get(workflow_id, owner)


def _request_hash(body: Mapping[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
