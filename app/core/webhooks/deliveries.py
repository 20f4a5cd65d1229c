"""The deliveries: checked at submit, queued, sent one attempt at a time (then DELIVERED,
WAITING for the next retry, or FAILED), due retries released (beat), lost ones recovered (the
recovery sweep), listed and resent by hand.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from app.core import logs, metrics
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, Conflict, TaskNotFound
from app.core.resources import task_resource, utc_iso
from app.core.webhooks.policy import WebhookPolicy
from app.core.webhooks.sending import Attempt, Sender
from app.core.webhooks.signing import NoSigningSecret, SigningSecrets
from app.core.workflows.resource import workflow_resource
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models import workflow as workflow_model
from app.models.webhook import DeliveryStatus

logger = logging.getLogger(__name__)

EVENTS = tuple(webhook_model.EVENTS.values())  # completed, failed, cancelled


class Deliveries:
    def __init__(
        self,
        db: DatabaseManager,
        enqueue: Callable[[uuid.UUID], None],
        secrets: SigningSecrets,
        policy: WebhookPolicy,
        delays: list[float],
        connect_timeout: float = 3.0,
        total_timeout: float = 10.0,
    ):
        self.db = db
        self._enqueue = enqueue  # sends a delivery's attempt to the webhooks queue
        self.secrets = secrets
        self.policy = policy
        self.delays = delays
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self.sender = Sender(policy.allowed_hosts if policy else frozenset(), connect_timeout, total_timeout)

    @classmethod
    def from_config(
        cls,
        db: DatabaseManager,
        enqueue: Callable[[uuid.UUID], None],
        config: Mapping[str, Any],
        secret_key: str,
    ) -> Deliveries:
        secrets = SigningSecrets(
            db,
            config["AUTH_MODE"],
            secret_key,
            config["WEBHOOK_SECRET"],
            config["WEBHOOK_SECRET_OVERLAP_HOURS"],
        )
        return cls(
            db,
            enqueue,
            secrets,
            WebhookPolicy.from_config(config),
            config["WEBHOOK_RETRY_DELAYS"],
            config["WEBHOOK_CONNECT_TIMEOUT_SECONDS"],
            config["WEBHOOK_TIMEOUT_SECONDS"],
        )

    # -- at submit

    def check(self, webhook: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The webhook to store with a task or schedule (events default to every ending); 400 naming
        the field when Tasker may not call it or has no secret to sign with."""
        if webhook is None:
            return None
        if not self.secrets.available():
            rule = (
                "Webhooks need a signing secret: the operator sets WEBHOOK_SECRET (docs: Tutorial, Webhooks)."
            )
            raise NoSigningSecret(f"webhook is not available: {rule}", {"webhook": [rule]})
        self.policy.check_url(webhook["url"])
        events = list(dict.fromkeys(webhook.get("events") or EVENTS))
        return {"url": webhook["url"], "events": events}

    # -- sending

    def queue_first_attempt(self, delivery_id: uuid.UUID) -> None:
        """Send the delivery's first attempt to the webhooks queue; if the broker is away, the
        recovery sweep queues it later."""
        try:
            self._enqueue(delivery_id)
        except BrokerUnavailable as exc:
            logger.warning("delivery %s not queued (the recovery sweep will): %s", delivery_id, exc.message)

    @property
    def cap(self) -> int:
        """Attempts before a delivery is FAILED: the first and one per retry delay."""
        return len(self.delays) + 1

    def deliver(self, delivery_id: uuid.UUID) -> str:
        """One attempt at a QUEUED delivery; what became of it (or `skipped` if it was not QUEUED)."""
        row = self.db.run_statement(lambda c: webhook_model.claim(c, delivery_id))
        if row is None:
            return "skipped"
        if row.workflow_id is not None:
            with logs.bound(workflow_id=str(row.workflow_id)):
                return self._attempt(row)
        with logs.bound(task_id=str(row.task_id)):
            return self._attempt(row)

    def _attempt(self, row: Any) -> str:
        event = self._event(row)
        if event is None:
            what = "workflow" if row.workflow_id is not None else "task"
            self.db.run(lambda c: webhook_model.finish(c, row.id, DeliveryStatus.FAILED, f"{what} deleted"))
            return DeliveryStatus.FAILED
        body = json.dumps(event, separators=(",", ":")).encode()
        attempt = self.sender.send(row.url, f"msg_{row.id.hex}", body, self.secrets.signing(row.owner))
        return self._settle(row, attempt)

    def _event(self, row: Any) -> dict[str, Any] | None:
        """The payload: `task.<event>` with the task, or `workflow.<event>` with the workflow and
        its steps; None when it is gone."""
        if row.workflow_id is not None:

            def read(conn: Any) -> Any:
                workflow = workflow_model.get(conn, row.workflow_id)
                return (
                    None
                    if workflow is None
                    else workflow_resource(workflow, workflow_model.steps(conn, workflow.id))
                )

            resource = self.db.run(read)
            kind = "workflow"
        else:
            task = self.db.run(lambda c: task_model.get(c, row.task_id))
            resource = None if task is None else task_resource(task)
            kind = "task"
        if resource is None:
            return None
        return {"type": f"{kind}.{row.event}", "timestamp": resource["completed_at"], kind: resource}

    def _settle(self, row: Any, attempt: Attempt) -> str:
        """Record the attempt and the delivery's next state in one transaction."""
        error = attempt.error or (None if attempt.delivered else f"HTTP {attempt.status_code}")
        if attempt.delivered:
            status, wait = DeliveryStatus.DELIVERED, None
        elif attempt.retryable and row.attempts <= len(self.delays):
            status, wait = DeliveryStatus.WAITING, self._delay(row.attempts, attempt.retry_after)
        else:
            status, wait = DeliveryStatus.FAILED, None
            if attempt.retryable:
                error = f"{error}; gave up after {row.attempts} attempts"

        def write(conn: Any) -> None:
            now = task_model.database_now(conn)
            webhook_model.add_attempt(
                conn,
                row.id,
                attempted_at=now - timedelta(milliseconds=attempt.duration_ms),
                status_code=attempt.status_code,
                duration_ms=attempt.duration_ms,
                response=attempt.response,
                error=attempt.error[:500] if attempt.error else None,
            )
            if wait is None:
                webhook_model.finish(conn, row.id, status, (error or "")[:500] or None)
            else:
                webhook_model.wait_until(conn, row.id, now + timedelta(seconds=wait), (error or "")[:500])

        self.db.run(write)
        outcome = {DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.WAITING: "retry"}.get(
            status, "failed"
        )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        metrics.WEBHOOK_SECONDS.observe(attempt.duration_ms / 1000)
        log = logger.info if status == DeliveryStatus.DELIVERED else logger.warning
        log(
            "delivery %s of %s: %s (attempt %s%s)",
            row.id,
            f"workflow {row.workflow_id}" if row.workflow_id is not None else f"task {row.task_id}",
            status,
            row.attempts,
            f", {error}" if error and status != DeliveryStatus.DELIVERED else "",
            extra={"task_id": str(row.task_id), "status": str(status), "duration_ms": attempt.duration_ms},
        )
        return status

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        """The wait before attempt `attempts + 1`: the schedule's, with +-10 % jitter, or longer when
        the receiver's Retry-After asks (up to the schedule's longest wait)."""
        delay = self.delays[attempts - 1] * random.uniform(0.9, 1.1)
        if retry_after is not None:
            delay = max(delay, min(retry_after, max(self.delays)))
        return delay

    # -- beat and the recovery sweep

    def release_due(self, now: datetime) -> int:
        """Queue the WAITING deliveries whose next attempt is due (beat, every scheduler pass)."""
        released = 0
        for delivery_id in self.db.run(lambda c: webhook_model.due(c, now)):
            if not self.db.run(
                lambda c, d=delivery_id: webhook_model.queue_again(c, d, (DeliveryStatus.WAITING,))
            ):
                continue
            try:
                self._enqueue(delivery_id)
            except BrokerUnavailable:
                self.db.run(lambda c, d=delivery_id: webhook_model.unqueue(c, d))  # the next pass tries again
                raise
            released += 1
        return released

    def recover(self, queued_before: datetime, sending_before: datetime) -> int:
        """Publish again QUEUED deliveries untouched since `queued_before` (their message was lost),
        and SENDING ones since `sending_before` (their worker stopped mid-delivery): that lost
        attempt is recorded and counts, so at the cap the delivery is FAILED instead."""
        count = 0
        for delivery_id in self.db.run(
            lambda c: webhook_model.stuck(c, DeliveryStatus.QUEUED, queued_before)
        ):
            if self.db.run(
                lambda c, d=delivery_id: webhook_model.queue_again(c, d, (DeliveryStatus.QUEUED,))
            ):
                self._enqueue(delivery_id)
                count += 1
        for delivery_id in self.db.run(
            lambda c: webhook_model.stuck(c, DeliveryStatus.SENDING, sending_before)
        ):
            status = self.db.run(
                lambda c, d=delivery_id: webhook_model.abandon(c, d, sending_before, self.cap)
            )
            if status is None:
                continue
            metrics.WEBHOOK_ATTEMPTS.labels("failed" if status == DeliveryStatus.FAILED else "retry").inc()
            logger.warning("delivery %s: its attempt was lost; %s", delivery_id, status)
            if status == DeliveryStatus.QUEUED:
                self._enqueue(delivery_id)
            count += 1
        return count

    # -- the API

    def for_task(self, task_id: uuid.UUID, owner: str | None) -> list[dict[str, Any]]:
        def read(conn: Any) -> Any:
            if task_model.get(conn, task_id, owner) is None:
                raise TaskNotFound("Task not found", {"id": str(task_id)})
            return webhook_model.for_task(conn, task_id)

        return [delivery_resource(row, tried) for row, tried in self.db.run(read)]

    def retry(self, task_id: uuid.UUID, delivery_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        """Send a delivery again now (DELIVERED, FAILED or WAITING); 409 while it is queued or sending."""
        retryable = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.WAITING)

        def requeue(conn: Any) -> Any:
            if task_model.get(conn, task_id, owner) is None:
                raise TaskNotFound("Task not found", {"id": str(task_id)})
            row = webhook_model.get(conn, delivery_id)
            if row is None or row.task_id != task_id:
                raise TaskNotFound("Delivery not found", {"delivery_id": str(delivery_id)})
            if not webhook_model.queue_again(conn, delivery_id, retryable):
                raise Conflict(
                    f"The delivery is {row.status}; it is being sent already.", {"status": row.status}
                )
            return row

        self.db.run(requeue)
        # The answer is the delivery as queued, read before a worker can take it (a 202's body
        # says what was done, not how far the sending got).
        queued = next(d for d in self.for_task(task_id, owner) if d["id"] == str(delivery_id))
        self._enqueue(delivery_id)  # BrokerUnavailable: a 503; the sweep sends it once the broker is back
        return queued


def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc_iso(value)


def delivery_resource(row: Any, tried: list[Any]) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "webhook_id": f"msg_{row.id.hex}",
        "event": f"task.{row.event}",
        "url": row.url,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == DeliveryStatus.WAITING else None,
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
        "last_error": row.last_error,
        "history": [
            {
                "attempted_at": _iso(a.attempted_at),
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "response": a.response,
                "error": a.error,
            }
            for a in tried
        ],
    }
