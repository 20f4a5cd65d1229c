"""Workflows: steps that are tasks, with parents, released as their parents end (release.py), and
the definitions they are made from (definition.py, refs.py)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.engine import Connection

from app.core import metrics
from app.core.broker import Broker
from app.core.errors import BrokerUnavailable
from app.core.live.changes import LIST_STREAMS, Watch
from app.core.ports import Registry
from app.core.workflows.release import EndStep, FollowUp, StepRelease
from app.models.task import TaskStatus
from app.models.workflow import WorkflowStatus

logger = logging.getLogger(__name__)


class Workflows:
    """What the one way a task ends (app/core/endings.py) calls for a workflow's step."""

    def __init__(self, registry: Registry, broker: Broker, watch: Watch):
        self.release = StepRelease(registry)
        self.broker = broker
        self.watch = watch

    def step_ended(
        self, conn: Connection, workflow_id: uuid.UUID, key: str, status: TaskStatus, end_step: EndStep
    ) -> FollowUp:
        return self.release.step_ended(conn, workflow_id, key, status, end_step)

    def repair(
        self, conn: Connection, workflow_id: uuid.UUID, key: str, end_step: EndStep
    ) -> FollowUp | None:
        return self.release.repair(conn, workflow_id, key, end_step)

    def after_commit(self, follow: FollowUp, publish: bool = True) -> None:
        """The released steps published (unless the caller has), as a submit publishes after its
        commit; one the broker does not take stays PENDING and the recovery sweep publishes it
        again."""
        for message in follow.released:
            try:
                if publish:
                    self.broker.enqueue(message)
            except BrokerUnavailable as exc:
                logger.warning(
                    "workflow step %s not published (%s); the sweep will", message.task_id, exc.message
                )
            self.watch.announce(message.task_id, TaskStatus.PENDING, LIST_STREAMS)
        if follow.finished is not None and follow.workflow_id is not None:
            self.ended(follow.workflow_id, follow.finished)

    def ended(self, workflow_id: uuid.UUID, status: WorkflowStatus) -> None:
        """A workflow has ended: counted, and told to whoever waits for it (`?wait=`, its stream)."""
        metrics.WORKFLOWS_FINISHED.labels(status.value).inc()
        self.watch.announce(workflow_id, status)


__all__ = ["FollowUp", "Workflows"]
