"""What several route modules share: the JSON body, ids in paths, Location headers, UTC bounds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import current_app, g, request
from werkzeug.exceptions import BadRequest, Forbidden, RequestEntityTooLarge, UnsupportedMediaType
from werkzeug.routing import BaseConverter

from app.core.errors import InvalidInput


class IdConverter(BaseConverter):
    """`<id:...>`: any one path segment, documented as a UUID; parse_id answers 400 for a bad one."""


class TemplateConverter(BaseConverter):
    """`<template:...>`: any one path segment, documented as a template's name; the route answers
    400 for a bad one."""


TEMPLATE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"  # a workflow template's name


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def json_object() -> dict[str, Any]:
    """The request body as a JSON object; 415 for another content type, 400 for anything else."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        body = json.loads(_body(), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


def _body() -> bytes:
    """The request body; 413 past MAX_CONTENT_LENGTH, for a chunked body (no Content-Length) too.

    Werkzeug limits a body of unknown length by cutting it at the limit, which would turn an
    oversized request into a confusing 400; this reads one byte more than allowed instead.
    """
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and request.environ.get("wsgi.input_terminated"):
        data = request.environ["wsgi.input"].read(limit + 1)
        if len(data) > limit:
            raise RequestEntityTooLarge(f"The body is larger than MAX_CONTENT_LENGTH ({limit} bytes).")
        return data
    return request.get_data()


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


def owner() -> str:
    """Whose new rows this request makes: the caller's owner."""
    return g.principal.owner


def require_admin(what: str, open_mode: bool = False) -> None:
    """403 unless the caller's key is an admin's (with `open_mode`, also a caller without a key
    in open mode, who may act on everything already)."""
    caller = g.principal
    if caller.admin or (open_mode and caller.key_id is None):
        return
    raise Forbidden(f"{what} needs an admin key.")


def scope(requested: str | None = None) -> str | None:
    """Whose rows this request reaches: the caller's own, or (admins) everyone's or `requested`'s."""
    caller = g.principal
    if caller.admin:
        return requested
    if requested is not None and requested != caller.owner:
        raise InvalidInput("Only admin keys may filter by owner.", {"owner": ["Admin keys only."]})
    return caller.owner
