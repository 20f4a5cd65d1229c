"""The one way a task ends, whoever ends it: the worker's outcome, the API's cancel, the sweep's give-up.

Each ending is one write of the terminal status (which only succeeds once per task) and, in the
same transaction, the task's webhook delivery; then, after the commit, one step that counts it in
`tasker_tasks_finished_total`, caches its output, announces it to waiting readers and queues the
delivery's first attempt. Whatever must happen when a task ends hooks into `Endings.after_commit`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Row

from app.core import metrics
from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.core.live.changes import Watch
from app.core.resources import task_output
from app.core.webhooks import Deliveries
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models.task import TaskStatus

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
        self, db: DatabaseManager, cache: CacheManager, watch: Watch, deliveries: Deliveries | None = None
    ):
        self.db = db
        self.cache = cache
        self.watch = watch
        self.deliveries = deliveries

    def finish(
        self,
        task_id: uuid.UUID,
        status: TaskStatus,
        result: Any = None,
        error: str | None = None,
        webhook: bool | None = None,
    ) -> Ending | None:
        """A run's outcome. `webhook`: whether the task has one (its claim said; None: not known).
        Without one the outcome is one statement; otherwise the delivery is written with it."""
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
        """Run the terminal `write` (with the delivery, in one transaction), then `after_commit`."""

        def ended(conn: Connection) -> Ending | None:
            row = write(conn)
            if row is None:
                return None
            delivery = None
            if may_deliver and self.deliveries is not None:
                delivery = webhook_model.record(conn, task_id, row.owner, row.webhook, status)
            output = task_output(status, result, error, row.progress, row.progress_message)
            return Ending(task_id, row.name, row.owner, status, output, delivery)

        if may_deliver and self.deliveries is not None:
            ending = self.db.run(ended)
        else:
            ending = self.db.run_statement(ended)  # one statement: no transaction of its own
        if ending is None:
            logger.info("task %s already ended; %s not recorded", task_id, status)
            return None
        self.after_commit(ending)
        return ending

    def after_commit(self, ending: Ending) -> None:
        """Counted once (only the write that ended the task gets here), cached and announced in one
        round trip to Redis, and its webhook delivery queued."""
        metrics.TASKS_FINISHED.labels(ending.name, ending.status.value).inc()
        announcement = self.watch.announcement(ending.task_id, ending.status)
        self.cache.set_output(ending.task_id, ending.owner, ending.output, publish=announcement)
        if ending.delivery is not None and self.deliveries is not None:
            self.deliveries.queue_first_attempt(ending.delivery)
