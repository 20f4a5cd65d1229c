"""Liveness and readiness: the process, the database, the broker, Redis and the workers."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask_smorest import Blueprint

from app.api import schemas
from app.api.errors import error_response
from app.core.monitor import Monitor

PING_TIMEOUT = 1.0


def create_health_routes(monitor: Monitor) -> Blueprint:
    bp = Blueprint("health", __name__, description="Health checks")

    @bp.get("/health")
    @bp.doc(summary="Liveness: the process answers")
    @bp.response(200, schemas.Health)
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @bp.get("/health/ready")
    @bp.doc(summary="Readiness: database, broker and at least one worker answer (503 names what is down)")
    @bp.response(200, schemas.Health)
    def ready() -> Response | dict[str, Any]:
        checks: dict[str, Any] = monitor.check_dependencies()
        down = [f"the {name}" for name in ("database", "broker") if checks[name] != "ok"]
        checks["workers"] = monitor.check_workers(PING_TIMEOUT) if checks["broker"] == "ok" else 0
        if checks["workers"] == 0:
            down.append(f"every worker (none answered a ping within {PING_TIMEOUT:g} s)")
        if down:
            verb = "is" if len(down) == 1 else "are"
            return error_response(
                503, f"Not ready: {' and '.join(down)} {verb} unavailable.", "not_ready", checks
            )
        return {"status": "ready", "checks": checks}

    @bp.get("/health/db")
    @bp.doc(summary="The database answers (503 if not)")
    @bp.response(200, schemas.Health)
    def health_db() -> Response | dict[str, Any]:
        check = monitor.check_database()
        if check != "ok":
            return error_response(503, "The database is unavailable.", "not_ready", {"database": check})
        return {"status": "ok", "checks": {"database": "ok"}}

    @bp.get("/health/redis")
    @bp.doc(summary="Redis answers, as cache and as broker, where it is used (503 if not)")
    @bp.response(200, schemas.Health)
    def health_redis() -> Response | dict[str, Any]:
        checks = monitor.check_redis()
        down = [name for name, check in checks.items() if check != "ok" and not check.startswith("not used")]
        if down:
            message = f"Redis is unavailable (as the {' and the '.join(down)})."
            return error_response(503, message, "not_ready", checks)
        return {"status": "ok", "checks": checks}

    return bp
