"""The v1 schedules API: recurring tasks on a cron expression."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from app.api import schemas
from app.api.docs import json_schema, option_fields, submit_body
from app.api.helpers import json_object, location, owner, parse_id, scope
from app.core.schedule_manager import ScheduleManager

create_schema = schemas.ScheduleCreate()
update_schema = schemas.ScheduleCreate(partial=True)


def create_schedule_routes(schedule_manager: ScheduleManager) -> Blueprint:
    bp = Blueprint("schedules", __name__, url_prefix="/api/v1", description="Recurring tasks (cron)")

    @bp.post("/schedules")
    @bp.doc(operationId="createSchedule")
    @bp.doc(
        summary="Create a schedule: one task of `task` at each fire time of `cron`",
        requestBody=submit_body(
            schedule_manager.registry,
            "task",
            "parameters",
            option_fields(create_schema, ("task", "parameters")),
            ["name", "cron"],
            policy=schedule_manager.policy,
        ),
    )
    @bp.response(201, schemas.Schedule)
    def create() -> tuple[dict[str, Any], int, dict[str, str]]:
        schedule = schedule_manager.create(create_schema.load(json_object()), owner())
        return schedule, 201, location("schedules", schedule["id"])

    @bp.get("/schedules/preview")
    @bp.doc(summary="The next fire times of a cron expression, before making a schedule of it")
    @bp.arguments(schemas.CronPreviewQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.CronPreview)
    def preview(cron: str, timezone: str, count: int) -> dict[str, Any]:
        return schedule_manager.preview(cron, timezone, count)

    @bp.get("/schedules")
    @bp.doc(summary="Schedules, newest first, with cursor pagination")
    @bp.arguments(schemas.ScheduleListQuery(), location="query", as_kwargs=True)
    @bp.response(200, schemas.ScheduleList)
    def list_schedules(limit: int, cursor: str | None = None, owner: str | None = None) -> dict[str, Any]:
        return schedule_manager.list(limit, cursor, scope(owner))

    @bp.get("/schedules/<id:schedule_id>")
    @bp.doc(summary="A schedule, with its next and last fire times", operationId="getSchedule")
    @bp.response(200, schemas.Schedule)
    def get_schedule(schedule_id: str) -> dict[str, Any]:
        return schedule_manager.get(parse_id(schedule_id, "schedule"), scope())

    @bp.patch("/schedules/<id:schedule_id>")
    @bp.doc(operationId="updateSchedule")
    @bp.doc(
        summary="Change a schedule; enabled=false pauses it, enabled=true resumes it",
        requestBody=_patch_body(schedule_manager.registry),
    )
    @bp.response(200, schemas.Schedule)
    def update_schedule(schedule_id: str) -> dict[str, Any]:
        changes = update_schema.load(json_object())
        return schedule_manager.update(parse_id(schedule_id, "schedule"), changes, scope())

    @bp.delete("/schedules/<id:schedule_id>")
    @bp.doc(summary="Delete a schedule; the tasks it made stay", operationId="deleteSchedule")
    @bp.response(204)
    def delete_schedule(schedule_id: str) -> tuple[str, int]:
        schedule_manager.delete(parse_id(schedule_id, "schedule"), scope())
        return "", 204

    return bp


def _patch_body(registry: Any) -> dict[str, Any]:
    body = json_schema(update_schema)
    body["properties"] = option_fields(update_schema, ())
    body["properties"]["task"]["enum"] = sorted(n for t in registry for n in (t.name, *t.aliases))
    body["minProperties"] = 1
    return {"required": True, "content": {"application/json": {"schema": body}}}
