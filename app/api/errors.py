"""One JSON error shape for every 4xx and 5xx: {"error", "code", "details"}."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, jsonify
from flask_limiter.errors import RateLimitExceeded
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from app.core.errors import TaskerError, describe_messages
from app.core.redact import Redactor

logger = logging.getLogger(__name__)


def error_response(status: int, message: str, code: str, details: dict[str, Any] | None = None) -> Response:
    response = jsonify({"error": message, "code": code, "details": details or {}})
    response.status_code = status
    return response


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _merge_locations(messages: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for per_location in messages.values():
        merged.update(per_location if isinstance(per_location, dict) else {"_schema": per_location})
    return merged


def register_error_handlers(app: Flask, redactor: Redactor) -> None:
    @app.errorhandler(TaskerError)
    def tasker_error(exc: TaskerError) -> Response:
        if exc.status >= 500:
            logger.warning("%s: %s %s", exc.code, exc.message, exc.details)
            # A client learns which dependency is down, never where it lives.
            response = error_response(exc.status, exc.message, exc.code, redactor.deep(exc.details))
            if getattr(exc, "retry_after", None):
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        return error_response(exc.status, exc.message, exc.code, exc.details)

    @app.errorhandler(ValidationError)
    def validation_error(exc: ValidationError) -> Response:
        problems = " ".join(describe_messages(exc.messages))
        details = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
        return error_response(400, f"Invalid request: {problems}", "validation_error", details)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        messages = (getattr(exc, "data", None) or {}).get("messages")
        if messages is not None:  # webargs: {location: {field: [rules]}}
            return validation_error(ValidationError(_merge_locations(messages)))
        message, details = exc.description or exc.name, {}
        if isinstance(exc, RateLimitExceeded):
            limit = str(exc.limit.limit)
            message = f"Too many requests: at most {limit} for this caller; retry after Retry-After seconds."
            details = {"limit": limit}
        response = error_response(exc.code or 500, message, _snake(exc.name), details)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "Internal server error; the problem has been logged.", "internal_error")
