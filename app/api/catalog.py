"""What the service offers and how busy it is: the task types and the queues, which admins pause
and resume."""

from __future__ import annotations

from typing import Any

from flask import g
from flask_smorest import Blueprint

from app.api import schemas
from app.api.docs import parameters_schema
from app.api.helpers import require_admin, scope
from app.core.errors import DependencyUnavailable
from app.core.monitor import Monitor
from app.core.pauses import Pauses
from app.core.ports import Registry
from app.core.served import ServedTypes
from app.core.usage import UsagePolicy


def create_catalog_routes(
    registry: Registry,
    monitor: Monitor,
    served: ServedTypes,
    pauses: Pauses,
    policy: UsagePolicy | None = None,
) -> Blueprint:
    bp = Blueprint("catalog", __name__, url_prefix="/api/v1", description="Task types and queues")

    @bp.get("/task-types")
    @bp.doc(
        summary="Every task type, its aliases, queue, limits, parameters (JSON Schema) and the live "
        "workers that serve it"
    )
    @bp.response(200, schemas.TaskTypeList)
    def task_types() -> dict[str, Any]:
        try:
            workers: dict[str, int] | None = served.read().workers
        except DependencyUnavailable:
            workers = None  # the catalogue answers; who serves it is unknown until the database is back
        return {"task_types": [task_type_resource(t, policy, workers) for t in registry]}

    @bp.get("/queues")
    @bp.doc(
        summary="Per queue: messages waiting, PENDING and STARTED tasks, the oldest PENDING's age; totals"
    )
    @bp.response(200, schemas.QueueReport)
    def queues() -> dict[str, Any]:
        return monitor.queue_stats(scope())  # the caller's tasks; an admin's: everyone's

    _add_pause_routes(bp, pauses)

    @bp.get("/stats")
    @bp.doc(
        summary="Per task type, over the tasks finished in a window: counts by status, throughput, "
        "failure ratio, run and wait time p50/p95/p99"
    )
    @bp.arguments(schemas.StatsQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.Stats)
    def stats(window: str, owner: str | None = None) -> dict[str, Any]:
        return {"window": window, **monitor.stats(schemas.WINDOWS[window], scope(owner))}

    return bp


def _add_pause_routes(bp: Blueprint, pauses: Pauses) -> None:
    @bp.post("/queues/<string:name>/pause")
    @bp.doc(
        summary="Pause a queue (admins): its tasks wait as WAITING until it is resumed; running ones finish",
        operationId="pauseQueue",
    )
    @bp.response(200, schemas.QueueState)
    def pause(name: str) -> dict[str, Any]:
        require_admin("Pausing a queue", open_mode=True)
        return pauses.pause(name, g.principal.owner)

    @bp.post("/queues/<string:name>/resume")
    @bp.doc(
        summary="Resume a queue (admins): the tasks its pause held run, highest priority first, then oldest",
        operationId="resumeQueue",
    )
    @bp.response(200, schemas.QueueState)
    def resume(name: str) -> dict[str, Any]:
        require_admin("Resuming a queue", open_mode=True)
        return pauses.resume(name)


def task_type_resource(
    task_type: Any, policy: UsagePolicy | None = None, workers: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "name": task_type.name,
        "module": task_type.module,
        "aliases": list(task_type.aliases),
        "description": task_type.description,
        "queue": task_type.queue,
        "soft_time_limit": task_type.soft_time_limit,
        "time_limit": task_type.time_limit,
        "max_retries": task_type.max_retries,
        "retry_policy": task_type.retry_policy.as_dict(),
        "priority": task_type.priority,
        "concurrency": None if task_type.concurrency is None else task_type.concurrency.as_json(),
        "limits": list(task_type.limits),
        "parameters": parameters_schema(task_type, policy),
        "workers": None if workers is None else workers.get(task_type.name, 0),
    }
