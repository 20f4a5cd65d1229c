"""The recovery sweep: publish again what a lost message or a dead worker left behind.

Run by beat every RECOVERY_INTERVAL_SECONDS, under a lock so two sweeps never overlap, with
every time read from the database's clock:

- PENDING untouched for `pending_after` seconds (never published, or its message was lost),
  and RETRYING untouched for that long plus the longest retry delay: published again.
- STARTED for more than `orphan_after` seconds while no worker reports running it (its
  worker was killed, its pool child died, or its outcome could not be written): back to
  PENDING and published again, or FAILED once it has used up its attempts.
- The fallbacks of what another transaction does: a workflow's waiting steps, a concurrency
  key's free slots, the tasks a queue held as it was resumed (app/core/pauses.py).

A message only ever starts a PENDING or RETRYING row, so a duplicate is harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.core import metrics
from app.core.broker import Broker, Message
from app.core.endings import Endings
from app.core.errors import BrokerUnavailable
from app.core.live.changes import TASK_STREAMS
from app.core.pauses import Pauses
from app.core.ports import Registry
from app.models import concurrency as concurrency_model
from app.models import task as task_model
from app.models import workflow as workflow_model
from app.models.task import TaskStatus

logger = logging.getLogger(__name__)

LOCK_NAME = "tasker-recovery"


@dataclass(frozen=True)
class Thresholds:
    pending_after: float = 300  # RECOVERY_PENDING_SECONDS
    orphan_after: float = 15  # RECOVERY_STARTED_SECONDS
    max_deliveries: int = 3  # TASK_MAX_DELIVERIES
    retry_delay: float = 60  # the longest wait before a retry
    inspect_timeout: float = 1.0  # how long workers have to say what they run

    @classmethod
    def from_config(cls, config: Mapping[str, Any], retry_delay: float) -> Thresholds:
        return cls(
            pending_after=config["RECOVERY_PENDING_SECONDS"],
            orphan_after=config["RECOVERY_STARTED_SECONDS"],
            max_deliveries=config["TASK_MAX_DELIVERIES"],
            retry_delay=retry_delay,
        )


class Recovery:
    """The sweep, with what it reads (database, registry) and what it asks and sends (the broker)."""

    def __init__(
        self,
        endings: Endings,
        registry: Registry,
        broker: Broker,
        thresholds: Thresholds,
    ):
        self.endings = endings  # a task given up on ends the one way every task ends
        self.db = endings.db
        self.announce = endings.watch.announce  # tells event streams of each task requeued
        self.deliveries = endings.deliveries  # webhook deliveries whose message or worker was lost
        self.registry = registry
        self.broker = broker  # it requeues there, and asks the workers what they run
        self.thresholds = thresholds
        self.pauses: Pauses | None = None  # paused queues (app/core/pauses.py)

    def sweep(self) -> dict[str, int]:
        kinds = (
            "republished", "requeued", "failed", "deliveries", "workflow_repairs", "admitted", "released",
            "skipped",
        )  # fmt: skip
        counts = dict.fromkeys(kinds, 0)
        with self.db.exclusive(LOCK_NAME) as held:
            if not held:
                counts["skipped"] = 1  # another sweep is running
                return counts
            now = self.db.run(task_model.database_now)
            for status, after in (
                (TaskStatus.PENDING, self.thresholds.pending_after),
                (TaskStatus.RETRYING, self.thresholds.pending_after + self.thresholds.retry_delay),
            ):
                before = now - timedelta(seconds=after)
                for row in self.db.run(lambda c, s=status, b=before: task_model.untouched_since(c, s, b)):
                    counts["republished"] += self._publish_again(row, row.status)
            self._recover_started(now, counts)
            counts["workflow_repairs"] = self.repair_waiting(
                now - timedelta(seconds=self.thresholds.pending_after)
            )
            counts["admitted"] = self.admit_waiting(now - timedelta(seconds=self.thresholds.pending_after))
            if self.pauses is not None:  # tasks held as their queue was resumed
                counts["released"] = self.pauses.release_stranded()
            if self.deliveries is not None:
                # A delivery is bounded by its timeout: SENDING for longer than that plus the
                # orphan threshold means its worker stopped mid-delivery.
                sending_after = self.deliveries.total_timeout + self.thresholds.orphan_after
                counts["deliveries"] = self.deliveries.recover(
                    now - timedelta(seconds=self.thresholds.pending_after),
                    now - timedelta(seconds=sending_after),
                )
        if any(counts[key] for key in ("republished", "requeued", "failed", "deliveries")):
            logger.warning(
                "recovery: %(republished)s republished, %(requeued)s requeued, %(failed)s failed, "
                "%(deliveries)s webhook deliveries queued again",
                counts,
            )
        return counts

    def _recover_started(self, now: Any, counts: dict[str, int]) -> None:
        before = now - timedelta(seconds=self.thresholds.orphan_after)
        rows = self.db.run(lambda c: task_model.started_before(c, before))
        if not rows:
            return
        try:
            running = self.broker.running_tasks(self.thresholds.inspect_timeout)
        except BrokerUnavailable as exc:
            logger.warning("recovery: cannot ask workers what they run: %s", exc.details)
            return
        for row in rows:
            if str(row.id) in running.get(row.worker, ()):
                continue  # still running
            task_type = self.registry.resolve(row.name)
            if row.attempts >= task_type.max_starts(self.thresholds.max_deliveries, row.retry_policy):
                error = (
                    f"The task was started {row.attempts} times and its worker stopped while running it "
                    "(killed, crashed or lost); giving up."
                )
                if self.endings.give_up(row.id, row.attempts, error) is not None:
                    counts["failed"] += 1
                continue
            counts["requeued"] += self._publish_again(row, TaskStatus.STARTED, row.attempts)

    def repair_waiting(self, before: Any) -> int:
        """WAITING steps untouched since `before` whose parents have all ended: decided now. Each is
        counted in tasker_workflow_repairs_total and logged, since a parent's ending should have."""
        repaired = 0
        for row in self.db.run(lambda c: workflow_model.waiting_since(c, before)):
            if self.endings.repair_step(row.workflow_id, row.step):
                repaired += 1
                metrics.WORKFLOW_REPAIRS.inc()
                logger.error(
                    "recovery: workflow %s step %s waited with every parent ended; decided now",
                    row.workflow_id,
                    row.step,
                )
        return repaired

    def admit_waiting(self, before: Any) -> int:
        """The fallback of admission: keys whose tasks have waited since `before` get their free
        slots filled (an ending admits the next task in its own transaction; a slot freed by a
        task whose message was refused, or a waiting task skipped meanwhile, waits for this)."""
        admissions = self.endings.admissions
        if admissions is None:
            return 0
        admitted = 0
        for key in self.db.run(lambda c: concurrency_model.awaited_keys(c, before)):

            def admit(conn: Any, key: str = key) -> list[Any]:
                admissions.lock(conn, key)
                return admissions.admit(conn, key)

            messages = self.db.run(admit)
            admissions.publish(messages)
            admitted += len(messages)
        return admitted

    def _publish_again(self, row: Any, status: str, attempts: int | None = None) -> bool:
        if not self.db.run(lambda c: task_model.requeue(c, row.id, status, attempts)):
            return False  # it moved on since we looked
        self.announce(row.id, TaskStatus.PENDING, TASK_STREAMS)
        task_type = self.registry.resolve(row.name)
        self.broker.enqueue(
            Message(task_type, row.id, row.parameters, row.priority, row.timeout_seconds, sealed=row.sealed)
        )
        return True
