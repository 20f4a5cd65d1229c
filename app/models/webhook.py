"""Webhook deliveries, their attempts, and each owner's signing-secret generation.

A delivery moves QUEUED (a message is on the `webhooks` queue, or about to be) -> SENDING (a
worker claimed it) -> DELIVERED, or WAITING (a retry is due at `next_attempt_at`; beat queues it
then), or FAILED (the receiver refused it, or the retry schedule ran out).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import database_now, metadata, utcnow
from app.models.types import UTCDateTime


class DeliveryStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    SENDING = "SENDING"
    WAITING = "WAITING"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"


URL_MAX_LENGTH = 2048  # a webhook's URL: the column, the policy and the API schema

deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),  # also the webhook-id the receiver deduplicates on
    sa.Column("task_id", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="CASCADE")),  # a task's ending
    sa.Column("workflow_id", sa.Uuid, sa.ForeignKey("workflows.id", ondelete="CASCADE")),  # or a workflow's
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("url", sa.String(URL_MAX_LENGTH), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("delivered_at", UTCDateTime()),
    sa.Column("last_error", sa.String(500)),
    sa.Index("ix_webhook_deliveries_task_id", "task_id"),
    sa.Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
)

attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id", sa.Uuid, sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempted_at", UTCDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("response", sa.Text),
    sa.Column("error", sa.String(500)),
    sa.Index("ix_webhook_attempts_delivery_id", "delivery_id"),
)

secrets = sa.Table(
    "webhook_secrets",
    metadata,
    sa.Column("owner", sa.String(100), primary_key=True),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("previous_until", UTCDateTime()),  # the previous generation signs too until then
    sa.Column("rotated_at", UTCDateTime(), nullable=False),
)

# Each terminal status and the webhook event it is: the one list of event names.
EVENTS = {"COMPLETED": "completed", "FAILED": "failed", "CANCELLED": "cancelled"}


def record(conn: Connection, task_id: uuid.UUID, owner: str, webhook: Any, status: str) -> uuid.UUID | None:
    """In the transaction that made the task terminal: a QUEUED delivery if its webhook wants this
    outcome; its id, or None."""
    return _record(conn, owner, webhook, status, task_id=task_id)


def record_workflow(
    conn: Connection, workflow_id: uuid.UUID, owner: str, webhook: Any, status: str
) -> uuid.UUID | None:
    """In the transaction that ended the workflow: a QUEUED delivery if its webhook wants this
    outcome; its id, or None."""
    return _record(conn, owner, webhook, status, workflow_id=workflow_id)


def _record(
    conn: Connection, owner: str, webhook: Any, status: str, **subject: uuid.UUID
) -> uuid.UUID | None:
    """A QUEUED delivery of `subject` (its task_id or its workflow_id) if `webhook` wants `status`."""
    event = EVENTS.get(str(status))
    if not webhook or event not in webhook.get("events", ()):
        return None
    delivery_id = uuid.uuid4()
    values = {
        "id": delivery_id, "owner": owner, "event": event, "url": webhook["url"],
        "status": DeliveryStatus.QUEUED,
        "next_attempt_at": utcnow(), "created_at": utcnow(), "updated_at": utcnow(),
    }  # fmt: skip
    conn.execute(deliveries.insert().values(**values, **subject))
    return delivery_id


def claim(conn: Connection, delivery_id: uuid.UUID) -> Row | None:
    """QUEUED -> SENDING, attempts + 1: the delivery, or None if it is not to be sent now."""
    query = (
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.SENDING, attempts=deliveries.c.attempts + 1, updated_at=utcnow())
        .returning(*deliveries.c)
    )
    return conn.execute(query).first()


def add_attempt(conn: Connection, delivery_id: uuid.UUID, **values: Any) -> None:
    conn.execute(attempts.insert().values(delivery_id=delivery_id, **values))


def wait_until(conn: Connection, delivery_id: uuid.UUID, at: datetime, error: str) -> bool:
    """SENDING -> WAITING until `at` (a retry)."""
    query = (
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.SENDING)
        .values(status=DeliveryStatus.WAITING, next_attempt_at=at, last_error=error, updated_at=utcnow())
    )
    return conn.execute(query).rowcount == 1


def finish(conn: Connection, delivery_id: uuid.UUID, status: DeliveryStatus, error: str | None) -> bool:
    """SENDING -> DELIVERED or FAILED."""
    values: dict[str, Any] = {"status": status, "last_error": error, "updated_at": utcnow()}
    if status == DeliveryStatus.DELIVERED:
        values["delivered_at"] = utcnow()
    query = deliveries.update().where(
        deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.SENDING
    )
    return conn.execute(query.values(**values)).rowcount == 1


def queue_again(conn: Connection, delivery_id: uuid.UUID, from_statuses: tuple[str, ...]) -> bool:
    """Back to QUEUED (and touched) if it is still in one of `from_statuses`."""
    query = (
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.status.in_(from_statuses))
        .values(status=DeliveryStatus.QUEUED, next_attempt_at=utcnow(), updated_at=utcnow())
    )
    return conn.execute(query).rowcount == 1


LOST = "lost: the attempt did not finish (its worker stopped, or passed its hard time limit)"


def abandon(conn: Connection, delivery_id: uuid.UUID, before: datetime, cap: int) -> str | None:
    """A SENDING delivery untouched since `before` lost its attempt: the attempt is recorded as
    failed, then the delivery is QUEUED again, or FAILED once `cap` attempts were made. The new
    status, or None if it was not in that state."""
    row = conn.execute(
        sa.select(deliveries.c.attempts, deliveries.c.updated_at).where(
            deliveries.c.id == delivery_id,
            deliveries.c.status == DeliveryStatus.SENDING,
            deliveries.c.updated_at < before,
        )
    ).first()
    if row is None:
        return None
    status = DeliveryStatus.FAILED if row.attempts >= cap else DeliveryStatus.QUEUED
    error = LOST if status == DeliveryStatus.QUEUED else f"{LOST}; gave up after {row.attempts} attempts"
    moved = conn.execute(
        deliveries.update()
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.status == DeliveryStatus.SENDING,
            deliveries.c.updated_at == row.updated_at,  # nobody settled or claimed it meanwhile
        )
        .values(status=status, last_error=error, next_attempt_at=utcnow(), updated_at=utcnow())
    ).rowcount
    if not moved:
        return None
    took = (database_now(conn) - row.updated_at).total_seconds() * 1000
    add_attempt(conn, delivery_id, attempted_at=row.updated_at, duration_ms=round(took, 2), error=LOST)
    return status


def unqueue(conn: Connection, delivery_id: uuid.UUID) -> None:
    """QUEUED -> WAITING (due now): its message could not be published."""
    conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.status == DeliveryStatus.QUEUED)
        .values(status=DeliveryStatus.WAITING, updated_at=utcnow())
    )


def due(conn: Connection, now: datetime, limit: int = 500) -> list[uuid.UUID]:
    """WAITING deliveries whose next attempt is due."""
    query = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.status == DeliveryStatus.WAITING, deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def stuck(conn: Connection, status: str, before: datetime, limit: int = 1000) -> list[uuid.UUID]:
    """Deliveries in `status` untouched since `before`: QUEUED whose message was lost, SENDING
    whose worker stopped mid-delivery."""
    query = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.status == status, deliveries.c.updated_at < before)
        .order_by(deliveries.c.updated_at)
        .limit(limit)
    )
    return list(conn.execute(query).scalars())


def for_task(conn: Connection, task_id: uuid.UUID) -> list[tuple[Row, list[Row]]]:
    """The task's deliveries, oldest first, each with its attempts, oldest first."""
    rows = list(
        conn.execute(
            sa.select(deliveries).where(deliveries.c.task_id == task_id).order_by(deliveries.c.created_at)
        )
    )
    if not rows:
        return []
    tried = conn.execute(
        sa.select(attempts)
        .where(attempts.c.delivery_id.in_([row.id for row in rows]))
        .order_by(attempts.c.id)
    )
    by_delivery: dict[uuid.UUID, list[Row]] = {row.id: [] for row in rows}
    for attempt in tried:
        by_delivery[attempt.delivery_id].append(attempt)
    return [(row, by_delivery[row.id]) for row in rows]


def get(conn: Connection, delivery_id: uuid.UUID) -> Row | None:
    return conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()


def generation(conn: Connection, owner: str) -> Row | None:
    return conn.execute(sa.select(secrets).where(secrets.c.owner == owner)).first()


class Overlapping(Exception):
    """A rotation while the previous one's overlap runs: it would stop the secret before it from
    signing early (receivers not yet moved over would refuse deliveries)."""

    def __init__(self, until: datetime):
        self.until = until


def rotate(conn: Connection, owner: str, previous_until: datetime) -> int:
    """The owner's next generation (the first rotation makes generation 2); the previous one signs
    too until `previous_until`. Overlapping while the last rotation's overlap still runs."""
    current = generation(conn, owner)
    if (
        current is not None
        and current.previous_until is not None
        and current.previous_until > database_now(conn)
    ):
        raise Overlapping(current.previous_until)
    number = (current.generation if current else 1) + 1
    if current is None:
        conn.execute(
            secrets.insert().values(
                owner=owner, generation=number, previous_until=previous_until, rotated_at=utcnow()
            )
        )
    else:
        conn.execute(
            secrets.update()
            .where(secrets.c.owner == owner)
            .values(generation=number, previous_until=previous_until, rotated_at=utcnow())
        )
    return number


def queue_counts(conn: Connection, owner: str | None = None) -> tuple[int, int, datetime | None]:
    """The `webhooks` queue as a report shows a task queue: QUEUED deliveries (its pending),
    SENDING ones (its started), and since when the oldest QUEUED one has waited."""
    waiting = (DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
    query = sa.select(deliveries.c.status, sa.func.count(), sa.func.min(deliveries.c.updated_at)).where(
        deliveries.c.status.in_(waiting)
    )
    if owner is not None:
        query = query.where(deliveries.c.owner == owner)
    found = {
        status: (count, since) for status, count, since in conn.execute(query.group_by(deliveries.c.status))
    }
    queued, oldest = found.get(DeliveryStatus.QUEUED, (0, None))
    return queued, found.get(DeliveryStatus.SENDING, (0, None))[0], oldest
