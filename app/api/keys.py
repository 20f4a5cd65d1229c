"""The v1 API keys resource: admin keys create, list, limit and revoke keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from app.api import helpers
from app.api.helpers import location, parse_id
from app.api.schemas import OWNER as NAME
from app.api.schemas import StrictSchema
from app.core.keys import ApiKey, KeyManager, RevokedKey
from config.base import RATE_LIMIT, RATE_LIMIT_RULE, rate_limit_error


def _rate(value: str | None) -> None:
    error = None if value is None else rate_limit_error(value)
    if error:
        raise ValidationError(error)


# The pattern is for the OpenAPI document: a function has no JSON Schema form, and without a
# pattern a generated request (the fuzz tests, any client generator) cannot know which values are
# valid. _rate is the rule itself (config/base.py), for the API, the CLI and the settings alike.
RATE = [
    validate.Length(max=200),
    validate.Regexp(rf"^{RATE_LIMIT.pattern}$", error=f"{RATE_LIMIT_RULE.capitalize()}."),
    _rate,
]


class KeyCreate(StrictSchema):
    name = fields.String(required=True, validate=NAME, metadata={"description": "What the key is for"})
    owner = fields.String(validate=NAME, metadata={"description": "Whose tasks it reaches (default: name)"})
    admin = fields.Boolean(load_default=False, metadata={"description": "Sees every owner; manages keys"})
    rate_limit = fields.String(allow_none=True, validate=RATE, metadata={"description": "e.g. 100/second"})


class KeyUpdate(StrictSchema):
    rate_limit = fields.String(required=True, allow_none=True, validate=RATE)


class CreatedKey(ApiKey):
    key = fields.String(required=True, metadata={"description": "The key: shown this once only"})
    webhook_secret = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "whsec_...: the owner's webhook signing secret (rotate: /webhooks/secret/rotate)"
        },
    )


class KeyList(Schema):
    keys = fields.List(fields.Nested(ApiKey), required=True)


class KeyListQuery(Schema):
    include_revoked = fields.Boolean(load_default=False)


create_schema, update_schema = KeyCreate(), KeyUpdate()


def require_admin() -> None:
    helpers.require_admin("Managing API keys")


def create_key_routes(keys: KeyManager, webhook_secret: Callable[[str], str | None]) -> Blueprint:
    bp = Blueprint("keys", __name__, url_prefix="/api/v1", description="API keys (admin keys only)")

    @bp.post("/keys")
    @bp.doc(summary="Create a key; the response shows it once", operationId="createKey")
    @bp.arguments(KeyCreate)
    @bp.response(201, CreatedKey)
    def create(data: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        require_admin()
        resource, key = keys.create(data["name"], data.get("owner"), data["admin"], data.get("rate_limit"))
        created = resource | {"key": key, "webhook_secret": webhook_secret(resource["owner"])}
        return created, 201, location("keys", resource["id"])

    @bp.get("/keys")
    @bp.doc(summary="Every key (never the keys themselves)")
    @bp.arguments(KeyListQuery, location="query", as_kwargs=True)
    @bp.response(200, KeyList)
    def list_keys(include_revoked: bool) -> dict[str, Any]:
        require_admin()
        return {"keys": keys.list(include_revoked)}

    @bp.patch("/keys/<id:key_id>")
    @bp.doc(summary="Set a key's rate limit (null: the deployment's)", operationId="updateKey")
    @bp.arguments(KeyUpdate)
    @bp.response(200, ApiKey)
    def update(data: dict[str, Any], key_id: str) -> dict[str, Any]:
        require_admin()
        return keys.set_rate_limit(parse_id(key_id, "key"), data["rate_limit"])

    @bp.delete("/keys/<id:key_id>")
    @bp.doc(
        summary="Revoke a key; it stops working within 5 s (an owner's last: its schedules pause)",
        operationId="revokeKey",
    )
    @bp.response(200, RevokedKey)
    def revoke(key_id: str) -> dict[str, Any]:
        require_admin()
        return keys.revoke(parse_id(key_id, "key"))

    return bp
