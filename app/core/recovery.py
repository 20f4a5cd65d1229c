"""The recovery sweep: publish again what a lost message or a dead worker left behind."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from app.models import task as task_model

logger = logging.getLogger(__name__)


def recover(manager: Any, pending_after_seconds: float, grace_seconds: float = 30) -> dict[str, int]:
    """Republish stranded PENDING rows and requeue STARTED rows past their hard time limit.

    PENDING rows untouched for `pending_after_seconds` are published again; STARTED
    rows whose attempt outlived the task type's hard time limit go back to PENDING
    and are published again. A duplicate message is harmless: the claim is a
    conditional UPDATE, and the attempt cap at claim time ends a task that keeps dying.
    """
    counts = {"republished": 0, "requeued": 0, "skipped": 0}
    with manager.db.exclusive("tasker-recovery") as held:
        if not held:
            counts["skipped"] = 1  # another sweep is running
            return counts
        now = manager.db.run(task_model.database_now)
        before = now - timedelta(seconds=pending_after_seconds)
        for row in manager.db.run(lambda c: task_model.pending_since(c, before)):
            counts["republished"] += _publish_again(manager, row, "PENDING")
        for task_type in manager.registry:
            cutoff = now - timedelta(seconds=task_type.time_limit + grace_seconds)
            for row in manager.db.run(
                lambda c, t=task_type, b=cutoff: task_model.started_before(c, t.name, b)
            ):
                counts["requeued"] += _publish_again(manager, row, "STARTED", row.attempts)
    if counts["republished"] or counts["requeued"]:
        logger.warning("recovery: %(republished)s republished, %(requeued)s requeued", counts)
    return counts


def _publish_again(manager: Any, row: Any, status: str, attempts: int | None = None) -> bool:
    if not manager.db.run(lambda c: task_model.requeue(c, row.id, status, attempts)):
        return False  # it moved on since we looked
    manager.publisher.publish(manager.registry.resolve(row.name), row.id, row.parameters, row.priority)
    return True
