"""Liveness and readiness: the process, the database, the broker, Redis and the workers.

In keys mode a caller without a key learns only up or down; the details (which dependency, and
why) are for callers with a key, and for everyone in open mode. /health/ready is computed at
most once a second per process and shared by every request in that second, so probing it cannot
hold the API's threads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Response
from flask_smorest import Blueprint

from app.api import schemas
from app.api.errors import error_response
from app.core.monitor import Monitor

PING_TIMEOUT = 1.0
READY_CACHE_SECONDS = 1.0

Answer = tuple[int, str, str, dict[str, Any]]  # status, message, code, checks


class Recent:
    """`compute()`'s answer, computed at most once per `seconds`; while one thread computes it,
    the others get the previous answer at once (or wait, the first time)."""

    def __init__(self, compute: Callable[[], Answer], seconds: float):
        self.compute = compute
        self.seconds = seconds
        self._lock = threading.Lock()
        self._answer: Answer | None = None
        self._at = 0.0

    def get(self) -> Answer:
        fresh = self._answer is not None and time.monotonic() - self._at < self.seconds
        if fresh or (self._answer is not None and not self._lock.acquire(blocking=False)):
            assert self._answer is not None
            return self._answer
        if self._answer is None:
            self._lock.acquire()
        try:
            if self._answer is None or time.monotonic() - self._at >= self.seconds:
                self._answer = self.compute()
                self._at = time.monotonic()
            return self._answer
        finally:
            self._lock.release()


def readiness(monitor: Monitor, jobs: dict[str, float]) -> Answer:
    checks: dict[str, Any] = monitor.check_dependencies()
    down = [f"the {name}" for name in ("database", "broker") if checks[name] != "ok"]
    checks["workers"] = monitor.check_workers(PING_TIMEOUT) if checks["broker"] == "ok" else 0
    # A detail, not a reason to take the API out of service: the alert rules watch it.
    checks["housekeeping"] = monitor.housekeeping(jobs) if checks["database"] == "ok" else {}
    if checks["workers"] == 0:
        down.append(f"every worker (none answered a ping within {PING_TIMEOUT:g} s)")
    if down:
        verb = "is" if len(down) == 1 else "are"
        return 503, f"Not ready: {' and '.join(down)} {verb} unavailable.", "not_ready", checks
    return 200, "", "ready", checks


def create_health_routes(
    monitor: Monitor,
    show_details: Callable[[], bool],
    redact: Callable[[Any], Any] = lambda v: v,
    jobs: dict[str, float] | None = None,
) -> Blueprint:
    bp = Blueprint("health", __name__, description="Health checks")

    def answer(status: int, message: str, code: str, checks: dict[str, Any]) -> Response | dict[str, Any]:
        details = show_details()
        if status != 200:
            shown = redact(checks) if details else {}
            return error_response(status, message if details else "Not ready.", code, shown)
        body: dict[str, Any] = {"status": code}
        if details and checks:
            body["checks"] = checks
        return body

    ready_answer = Recent(lambda: readiness(monitor, jobs or {}), READY_CACHE_SECONDS)

    @bp.get("/health")
    @bp.doc(summary="Liveness: the process answers")
    @bp.doc(security=[])  # anyone may ask; details only to a key (or in open mode)
    @bp.response(200, schemas.Health)
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @bp.get("/health/ready")
    @bp.doc(summary="Readiness: database, broker and at least one worker answer (503 names what is down)")
    @bp.doc(security=[])  # anyone may ask; details only to a key (or in open mode)
    @bp.response(200, schemas.Health)
    def ready() -> Response | dict[str, Any]:
        return answer(*ready_answer.get())

    @bp.get("/health/db")
    @bp.doc(summary="The database answers (503 if not)")
    @bp.doc(security=[])  # anyone may ask; details only to a key (or in open mode)
    @bp.response(200, schemas.Health)
    def health_db() -> Response | dict[str, Any]:
        check = monitor.check_database()
        if check != "ok":
            return answer(503, "The database is unavailable.", "not_ready", {"database": check})
        return answer(200, "", "ok", {"database": "ok"})

    @bp.get("/health/redis")
    @bp.doc(summary="Redis answers, as cache and as broker, where it is used (503 if not)")
    @bp.doc(security=[])  # anyone may ask; details only to a key (or in open mode)
    @bp.response(200, schemas.Health)
    def health_redis() -> Response | dict[str, Any]:
        checks = monitor.check_redis()
        down = [name for name, check in checks.items() if check != "ok" and not check.startswith("not used")]
        if down:
            message = f"Redis is unavailable (as the {' and the '.join(down)})."
            return answer(503, message, "not_ready", checks)
        return answer(200, "", "ok", checks)

    return bp
