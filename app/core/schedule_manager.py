"""Recurring schedules: create, read, change, pause, delete, and fire them when due.

Each fire time makes one task. Two guards keep it to one even when two beat processes run
by mistake: firing holds a database lock, and the tasks table has a unique index on
(schedule_id, scheduled_for), so a second task for the same fire time cannot be written.
Fire times missed while no beat ran are made up with one run, not one per missed time.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.core.cron import Cron, CronError, zone
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, Conflict, InvalidInput, ScheduleNotFound, UnknownTaskType
from app.core.resources import schedule_resource
from app.core.task_manager import Registry, TaskManager
from app.models import schedule as schedule_model
from app.models import task as task_model

logger = logging.getLogger(__name__)

LOCK_NAME = "tasker-schedules"


class ScheduleManager:
    def __init__(self, db: DatabaseManager, registry: Registry, tasks: TaskManager):
        self.db = db
        self.registry = registry
        self.tasks = tasks

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

    def fire_due(self, now: datetime | None = None) -> int | None:
        """Make a task for each schedule whose time has come (beat runs this every second or so).

        Returns how many tasks it made, or None if another process is firing schedules right now.
        `now` defaults to the database's clock; tests pass their own to move time.
        """
        with self.db.exclusive(LOCK_NAME) as held:
            if not held:
                return None
            if now is None:
                now = _aware(self.db.run(task_model.database_now))
            return sum(self._fire(row, now) for row in self.db.run(lambda c: schedule_model.due(c, now)))

    def _fire(self, row: Any, now: datetime) -> int:
        fire_time = _aware(row.next_run_at)
        try:
            next_run = Cron.parse(row.cron).next_after(max(fire_time, now), zone(row.timezone))
            task_type = self.registry.resolve(row.task)
            clean = task_type.validate(row.parameters, "parameters")
        except (CronError, InvalidInput) as exc:  # the catalog changed since the schedule was made
            logger.error("schedule %s (%s) cannot fire: %s", row.id, row.name, exc)
            self.db.run(lambda c: schedule_model.update(c, row.id, enabled=False, next_run_at=None))
            return 0
        task_id = uuid.uuid4()

        def record(conn: Any) -> bool:
            if not schedule_model.advance(conn, row.id, row.next_run_at, next_run, task_id):
                return False  # changed or fired by someone else since we looked
            task_model.insert(
                conn,
                task_id,
                task_type.name,
                clean,
                task_type.queue,
                priority=row.priority,
                schedule_id=row.id,
                scheduled_for=fire_time,
            )
            return True

        try:
            if not self.db.run(record):
                return 0
        except sa.exc.IntegrityError:
            # This fire time already made its task: move the schedule on without another.
            self.db.run(lambda c: schedule_model.advance(c, row.id, row.next_run_at, next_run, None))
            return 0
        try:
            self.tasks.publisher.publish(task_type, task_id, clean, row.priority)
        except BrokerUnavailable as exc:
            # The row stays PENDING; the recovery sweep publishes it once the broker is back.
            logger.warning("schedule %s made task %s but could not publish it: %s", row.id, task_id, exc)
        return 1

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
            cron = Cron.parse(data["cron"])
        except CronError as exc:
            raise InvalidInput(str(exc), {"cron": [str(exc)]}) from None
        try:
            zone(data["timezone"])
        except CronError as exc:
            raise InvalidInput(str(exc), {"timezone": [str(exc)]}) from None
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
        now = _aware(self.db.run(task_model.database_now))
        next_run = Cron.parse(values["cron"]).next_after(now, zone(values["timezone"]))
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


def _aware(value: datetime) -> datetime:
    """SQLite keeps UTC without a zone."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
