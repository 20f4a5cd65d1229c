"""The v1 schedules API: recurring tasks on a cron expression."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.api import schemas
from app.api.docs import json_schema, submit_body
from app.api.routes import json_object
from app.api.v1 import parse_id
from app.core.schedule_manager import ScheduleManager

create_schema = schemas.ScheduleCreate()
update_schema = schemas.ScheduleUpdate()


def create_schedule_routes(schedule_manager: ScheduleManager) -> Blueprint:
    bp = Blueprint("schedules", __name__, url_prefix="/api/v1", description="Recurring tasks (cron)")

    @bp.post("/schedules")
    @bp.doc(operationId="createSchedule")
    @bp.doc(
        summary="Create a schedule: one task of `task` at each fire time of `cron`",
        requestBody=submit_body(
            schedule_manager.registry, "task", "parameters", _options(create_schema), ["name", "cron"]
        ),
    )
    @bp.response(201, schemas.Schedule)
    def create() -> tuple[dict[str, Any], int, dict[str, str]]:
        schedule = schedule_manager.create(create_schema.load(json_object()))
        return schedule, 201, {"Location": f"/api/v1/schedules/{schedule['id']}"}

    @bp.get("/schedules")
    @bp.doc(summary="Every schedule, by name")
    @bp.response(200, schemas.ScheduleList)
    def list_schedules() -> dict[str, Any]:
        return schedule_manager.list()

    @bp.get("/schedules/<schedule_id:schedule_id>")
    @bp.doc(summary="A schedule, with its next and last fire times", operationId="getSchedule")
    @bp.response(200, schemas.Schedule)
    def get_schedule(schedule_id: str) -> dict[str, Any]:
        return schedule_manager.get(parse_id(schedule_id, "schedule"))

    @bp.patch("/schedules/<schedule_id:schedule_id>")
    @bp.doc(operationId="updateSchedule")
    @bp.doc(
        summary="Change a schedule; enabled=false pauses it, enabled=true resumes it",
        requestBody=_patch_body(schedule_manager.registry),
    )
    @bp.response(200, schemas.Schedule)
    def update_schedule(schedule_id: str) -> dict[str, Any]:
        changes = update_schema.load(json_object())
        return schedule_manager.update(parse_id(schedule_id, "schedule"), changes)

    @bp.delete("/schedules/<schedule_id:schedule_id>")
    @bp.doc(summary="Delete a schedule; the tasks it made stay", operationId="deleteSchedule")
    @bp.response(204)
    def delete_schedule(schedule_id: str) -> tuple[str, int]:
        schedule_manager.delete(parse_id(schedule_id, "schedule"))
        return "", 204

    return bp


def _options(schema: Any) -> dict[str, Any]:
    """The schedule's own fields (all but task and parameters), as JSON Schema."""
    properties = dict(json_schema(schema)["properties"])
    properties["priority"] = schemas.PRIORITY_SCHEMA
    return {key: value for key, value in properties.items() if key not in ("task", "parameters")}


def _patch_body(registry: Any) -> dict[str, Any]:
    body = json_schema(update_schema)
    body["properties"]["priority"] = schemas.PRIORITY_SCHEMA
    body["properties"]["task"]["enum"] = sorted(n for t in registry for n in (t.name, *t.aliases))
    body["minProperties"] = 1
    return {"required": True, "content": {"application/json": {"schema": body}}}
