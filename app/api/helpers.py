"""What several route modules share: the JSON body, ids in paths, Location headers, UTC bounds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType
from werkzeug.routing import BaseConverter

from app.core.errors import InvalidInput


class IdConverter(BaseConverter):
    """`<id:...>`: any one path segment, documented as a UUID; parse_id answers 400 for a bad one."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 for another content type, 400 for anything else."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        body = json.loads(request.get_data(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def parse_id(value: str, what: str = "task") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            f"{value[:50]!r} is not a valid {what} id (a UUID).", {"id": ["Not a valid UUID."]}
        ) from None


def location(path: str, resource_id: Any) -> dict[str, str]:
    return {"Location": f"/api/v1/{path}/{resource_id}"}


def utc(field: str, value: datetime) -> datetime:
    """`value` in UTC; 400 naming `field` when that leaves the calendar."""
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is in year 0 in UTC
        raise InvalidInput(
            f"{field} is out of range.", {field: ["Out of range once converted to UTC."]}
        ) from None
