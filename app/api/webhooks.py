"""The v1 webhook resources: a task's deliveries, a resend by hand, and the signing secret."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.api import helpers
from app.api.helpers import parse_id, scope
from app.api.schemas import OWNER, QuerySchema
from app.core.resources import Timestamp
from app.core.webhooks import Deliveries


class Attempt(Schema):
    attempted_at = Timestamp(required=True)
    status_code = fields.Integer(allow_none=True, metadata={"description": "null: no answer"})
    duration_ms = fields.Float(required=True)
    response = fields.String(allow_none=True, metadata={"description": "The first 1 KB of the answer"})
    error = fields.String(allow_none=True)


class Delivery(Schema):
    id = fields.UUID(required=True)
    webhook_id = fields.String(
        required=True, metadata={"description": "webhook-id: the same on every attempt"}
    )
    event = fields.String(required=True, metadata={"example": "task.completed"})
    url = fields.String(required=True)
    status = fields.String(
        required=True,
        metadata={
            "description": "QUEUED, SENDING, WAITING (a retry is due at next_attempt_at), DELIVERED, FAILED"
        },
    )
    attempts = fields.Integer(required=True)
    next_attempt_at = Timestamp(allow_none=True)
    created_at = Timestamp(required=True)
    delivered_at = Timestamp(allow_none=True)
    last_error = fields.String(allow_none=True)
    history = fields.List(fields.Nested(Attempt), required=True, metadata={"description": "Every attempt"})


class DeliveryList(Schema):
    deliveries = fields.List(fields.Nested(Delivery), required=True)


class OwnerQuery(QuerySchema):
    owner = fields.String(validate=OWNER, metadata={"description": "Admin keys: whose secret to rotate"})


class SigningSecret(Schema):
    secret = fields.String(required=True, metadata={"description": "whsec_...: shown this once"})
    previous_valid_until = Timestamp(
        required=True,
        metadata={"description": "Deliveries carry a signature by the previous secret too until then"},
    )


def create_webhook_routes(deliveries: Deliveries) -> Blueprint:
    bp = Blueprint("webhooks", __name__, url_prefix="/api/v1", description="Completion webhooks")

    @bp.get("/tasks/<id:task_id>/deliveries")
    @bp.doc(summary="The task's webhook deliveries, each with every attempt", operationId="listDeliveries")
    @bp.response(200, DeliveryList)
    def list_deliveries(task_id: str) -> dict[str, Any]:
        return {"deliveries": deliveries.for_task(parse_id(task_id), scope())}

    @bp.post("/tasks/<id:task_id>/deliveries/<id:delivery_id>/retry")
    @bp.doc(summary="Send a delivery again now", operationId="retryDelivery")
    @bp.response(202, Delivery, description="Queued")
    def retry_delivery(task_id: str, delivery_id: str) -> tuple[dict[str, Any], int]:
        return deliveries.retry(parse_id(task_id), parse_id(delivery_id, "delivery"), scope()), 202

    @bp.post("/webhooks/secret/rotate")
    @bp.doc(
        summary="A new signing secret for the caller's deliveries (API keys mode); the previous one "
        "keeps signing for WEBHOOK_SECRET_OVERLAP_HOURS",
        operationId="rotateWebhookSecret",
    )
    @bp.arguments(OwnerQuery, location="query", as_kwargs=True)
    @bp.response(200, SigningSecret)
    def rotate(owner: str | None = None) -> dict[str, Any]:
        whose = scope(owner) or helpers.owner()
        return deliveries.secrets.rotate(whose)

    return bp
