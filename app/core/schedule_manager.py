"""Recurring schedules: create, read, change, pause and delete them (the Scheduler fires them)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from app.core.cron import Cron, CronError, zone
from app.core.database_manager import DatabaseManager
from app.core.errors import Conflict, InvalidInput, ScheduleNotFound, UnknownTaskType
from app.core.ports import Registry
from app.core.resources import schedule_resource
from app.models import schedule as schedule_model
from app.models import task as task_model


class ScheduleManager:
    def __init__(self, db: DatabaseManager, registry: Registry):
        self.db = db
        self.registry = registry

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """A new schedule from validated request fields; its first fire time is computed now."""
        values = self._checked(data)
        values["next_run_at"] = self._next_run(values) if values["enabled"] else None
        schedule_id = uuid.uuid4()
        self._write(values["name"], lambda c: schedule_model.insert(c, schedule_id, **values))
        return self.get(schedule_id)

    def get(self, schedule_id: uuid.UUID) -> dict[str, Any]:
        return schedule_resource(self._row(schedule_id))

    def list(self) -> dict[str, Any]:
        return {"schedules": [schedule_resource(row) for row in self.db.run(schedule_model.list_all)]}

    def update(self, schedule_id: uuid.UUID, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some fields; a new cron, time zone or a resume computes the next fire time anew."""
        row = self._row(schedule_id)
        current = {key: getattr(row, key) for key in ("name", "task", "parameters", "cron", "timezone")}
        current |= {"priority": row.priority, "enabled": row.enabled}
        if "task" in changes and "parameters" not in changes and changes["task"] != row.task:
            changes = changes | {"parameters": row.parameters}  # checked against the new type
        values = self._checked(current | changes)
        timing = ("cron", "timezone", "enabled")
        if not values["enabled"]:
            values["next_run_at"] = None
        elif any(values[key] != current[key] for key in timing) or row.next_run_at is None:
            values["next_run_at"] = self._next_run(values)
        found = self._write(values["name"], lambda c: schedule_model.update(c, schedule_id, **values))
        if not found:
            raise ScheduleNotFound("Schedule not found", {"id": str(schedule_id)})
        return self.get(schedule_id)

    def delete(self, schedule_id: uuid.UUID) -> None:
        """Remove a schedule; the tasks it made stay, still naming it."""
        if not self.db.run(lambda c: schedule_model.delete(c, schedule_id)):
            raise ScheduleNotFound("Schedule not found", {"id": str(schedule_id)})

    def _checked(self, data: dict[str, Any]) -> dict[str, Any]:
        """The stored fields, with the task type's own name and cleaned parameters; 400 naming the field."""
        try:
            task_type = self.registry.resolve(data["task"])
        except UnknownTaskType as exc:
            valid = exc.details["valid_task_names"]
            raise InvalidInput(
                f"Unknown task {str(data['task'])[:100]!r}. Valid tasks: {', '.join(valid)}.",
                {"task": ["Unknown task type."], "valid_tasks": valid},
            ) from None
        parameters = task_type.validate(data.get("parameters") or {}, "parameters")
        try:
            zone(data["timezone"])
        except CronError as exc:
            raise InvalidInput(str(exc), {"timezone": [str(exc)]}) from None
        try:
            cron = Cron.parse(data["cron"], data["timezone"])
        except CronError as exc:
            raise InvalidInput(str(exc), {"cron": [str(exc)]}) from None
        return {
            "name": data["name"],
            "task": task_type.name,
            "parameters": parameters,
            "cron": cron.expression,
            "timezone": data["timezone"],
            "priority": data["priority"],
            "enabled": data["enabled"],
        }

    def _next_run(self, values: dict[str, Any]) -> datetime:
        now = self.db.run(task_model.database_now)
        next_run = Cron.parse(values["cron"], values["timezone"]).next_after(now)
        if next_run is None:
            message = f"cron {values['cron']!r} never fires (no such date)."
            raise InvalidInput(message, {"cron": [message]})
        return next_run

    def _write(self, name: str, work: Any) -> Any:
        try:
            return self.db.run(work)
        except sa.exc.IntegrityError:
            raise Conflict(f"A schedule named {name!r} exists already.", {"name": name}) from None

    def _row(self, schedule_id: uuid.UUID) -> Any:
        row = self.db.run(lambda c: schedule_model.get(c, schedule_id))
        if row is None:
            raise ScheduleNotFound("Schedule not found", {"id": str(schedule_id)})
        return row
