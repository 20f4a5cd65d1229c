"""The limits: concurrency keys' slots (read), and named rate limits, which admins set."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.api import schemas
from app.api.helpers import require_admin, scope
from app.core.rate_limits import RateLimits
from app.core.task_manager import TaskManager


def create_limit_routes(task_manager: TaskManager, rate_limits: RateLimits) -> Blueprint:
    bp = Blueprint("limits", __name__, url_prefix="/api/v1", description="Concurrency keys and rate limits")

    @bp.get("/limits")
    @bp.doc(
        summary="Concurrency keys with unfinished tasks (running and waiting, per key), and the named "
        "rate limits (rate, burst, tokens free, tasks waiting)",
        operationId="getLimits",
    )
    @bp.response(200, schemas.LimitsView)
    def limits() -> dict[str, Any]:
        owner = scope()
        return task_manager.limits(owner) | {"rate_limits": rate_limits.summary(owner)}

    @bp.put("/limits/<string:name>")
    @bp.doc(
        summary="Set a named rate limit (admins): the task types that consume it start at most "
        "`rate` runs, across every worker, `burst` at once",
        operationId="putRateLimit",
    )
    @bp.arguments(schemas.RateLimitPut)
    @bp.response(200, schemas.RateLimitView)
    def put(data: dict[str, Any], name: str) -> dict[str, Any]:
        require_admin("Setting a rate limit", open_mode=True)
        return rate_limits.put(name, data["rate"], data["burst"])

    @bp.delete("/limits/<string:name>")
    @bp.doc(
        summary="Remove a named rate limit (admins): its types run unpaced", operationId="deleteRateLimit"
    )
    @bp.response(204)
    def delete(name: str) -> tuple[str, int]:
        require_admin("Removing a rate limit", open_mode=True)
        rate_limits.delete(name)
        return "", 204

    return bp
