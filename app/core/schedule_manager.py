"""Recurring schedules: create, read, change, pause and delete them (the Scheduler fires them)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from app.core import tags
from app.core.cron import Cron, CronError, zone
from app.core.database_manager import DatabaseManager
from app.core.errors import Conflict, InvalidInput, ScheduleNotFound, UnknownTaskType
from app.core.ports import Registry
from app.core.quotas import QuotaExceeded
from app.core.resources import decode_cursor, encode_cursor, schedule_resource
from app.core.sealing import Sealer
from app.core.usage import UsagePolicy
from app.core.webhooks import Deliveries
from app.models import schedule as schedule_model
from app.models import task as task_model
from app.models.task import DEFAULT_OWNER


class ScheduleManager:
    """Every method takes the caller's `owner`; another owner's schedule is not found. None: an admin.

    `max_schedules` caps the schedules of one owner (0: no cap); `min_interval_seconds` is the
    shortest time a schedule may leave between two fire times.
    """

    def __init__(
        self,
        db: DatabaseManager,
        registry: Registry,
        max_schedules: int = 0,
        min_interval_seconds: int = 60,
        policy: UsagePolicy | None = None,
        deliveries: Deliveries | None = None,
        sealer: Sealer | None = None,
    ):
        self.sealer = sealer  # seals what a type's parameters must not show (app/core/sealing.py)
        self.policy = policy
        self.db = db
        self.registry = registry
        self.max_schedules = max_schedules
        self.min_interval_seconds = min_interval_seconds
        self.deliveries = deliveries

    def create(self, data: dict[str, Any], owner: str = DEFAULT_OWNER) -> dict[str, Any]:
        """A new schedule from validated request fields; its first fire time is computed now."""
        values = self._checked(data)
        values["next_run_at"] = self._next_run(values) if values["enabled"] else None
        schedule_id = uuid.uuid4()

        def insert(conn: Any) -> None:
            if self.max_schedules:  # counted in the inserting transaction, under the owner's lock: exact
                schedule_model.lock_owner(conn, owner)
                if schedule_model.count(conn, owner) >= self.max_schedules:
                    most = self.max_schedules
                    rule = f"Quota exceeded: at most {most} schedules per owner; delete one first."
                    raise QuotaExceeded("schedules", most, rule)
            schedule_model.insert(conn, schedule_id, owner=owner, **values)

        self._write(values["name"], insert)
        return self.get(schedule_id)

    def get(self, schedule_id: uuid.UUID, owner: str | None = None) -> dict[str, Any]:
        return schedule_resource(self._row(schedule_id, owner))

    def list(self, limit: int = 50, cursor: str | None = None, owner: str | None = None) -> dict[str, Any]:
        """A page of schedules, newest first, and the cursor of the next page (None on the last)."""
        after = decode_cursor(cursor) if cursor else None
        rows = self.db.run(lambda c: schedule_model.list_page(c, limit + 1, after=after, owner=owner))
        next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        return {"schedules": [schedule_resource(row) for row in rows[:limit]], "next_cursor": next_cursor}

    def update(
        self, schedule_id: uuid.UUID, changes: dict[str, Any], owner: str | None = None
    ) -> dict[str, Any]:
        """Change some fields; a new cron, time zone or a resume computes the next fire time anew."""
        row = self._row(schedule_id, owner)
        current = {key: getattr(row, key) for key in ("name", "task", "parameters", "cron", "timezone")}
        current |= {
            "priority": row.priority,
            "enabled": row.enabled,
            "webhook": row.webhook,
            "tags": row.tags,
        }
        # The secrets it holds sealed stay while its type does (a change masks them in what it sends).
        current["sealed"] = row.sealed if changes.get("task", row.task) == row.task else None
        if "task" in changes and "parameters" not in changes and changes["task"] != row.task:
            changes = changes | {"parameters": row.parameters}  # checked against the new type
        values = self._checked(current | changes)
        timing = ("cron", "timezone", "enabled")
        if not values["enabled"]:
            values["next_run_at"] = None
        elif any(values[key] != current[key] for key in timing) or row.next_run_at is None:
            values["next_run_at"] = self._next_run(values)
        found = self._write(values["name"], lambda c: schedule_model.update(c, schedule_id, owner, **values))
        if not found:
            raise ScheduleNotFound("Schedule not found", {"id": str(schedule_id)})
        return self.get(schedule_id, owner)

    def delete(self, schedule_id: uuid.UUID, owner: str | None = None) -> None:
        """Remove a schedule; the tasks it made stay, still naming it."""
        if not self.db.run(lambda c: schedule_model.delete(c, schedule_id, owner)):
            raise ScheduleNotFound("Schedule not found", {"id": str(schedule_id)})

    def preview(self, cron: str, timezone: str = "UTC", count: int = 5) -> dict[str, Any]:
        """The next `count` fire times of `cron` read in `timezone`, from now; 400 naming the field."""
        parsed = self._cron(cron, timezone)
        times: list[datetime] = []
        after = datetime.now(UTC)
        while len(times) < count and (after := parsed.next_after(after)) is not None:
            times.append(after)
        return {"cron": parsed.expression, "timezone": timezone, "next_run_times": times}

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
        if self.policy is not None:
            self.policy.check(task_type.name, parameters)
        parameters, sealed = self._sealed(task_type, parameters, data.get("sealed"))
        cron = self._cron(data["cron"], data["timezone"])
        webhook = data.get("webhook")
        if webhook is not None:
            if self.deliveries is None:
                raise InvalidInput("webhook is not available here.", {"webhook": ["Not available."]})
            webhook = self.deliveries.check(webhook)
        return {
            "webhook": webhook,
            "sealed": sealed,
            "tags": tags.checked(data.get("tags")),
            "name": data["name"],
            "task": task_type.name,
            "parameters": parameters,
            "cron": cron.expression,
            "timezone": data["timezone"],
            "priority": data["priority"],
            "enabled": data["enabled"],
        }

    def _sealed(
        self, task_type: Any, parameters: dict[str, Any], sealed: str | None
    ) -> tuple[dict[str, Any], Any]:
        """The parameters to store (a type's secrets masked) and its secrets sealed: those given
        now, and those a change does not give again."""
        split = getattr(task_type, "secrets", None)
        if split is None:
            return parameters, None
        stored, secrets = split(parameters)
        if not secrets:
            return stored, sealed
        if self.sealer is None:
            raise InvalidInput(f"{task_type.name} is not available here.", {"task": ["Not available."]})
        return stored, self.sealer.merge(sealed, secrets)

    def _cron(self, expression: str, timezone: str) -> Cron:
        """The parsed cron, or InvalidInput naming timezone or cron; also its minimum interval."""
        try:
            zone(timezone)
        except CronError as exc:
            raise InvalidInput(str(exc), {"timezone": [str(exc)]}) from None
        try:
            cron = Cron.parse(expression, timezone)
        except CronError as exc:
            raise InvalidInput(str(exc), {"cron": [str(exc)]}) from None
        self._check_interval(cron)
        return cron

    def _check_interval(self, cron: Cron) -> None:
        """400 if two of the next fire times are closer than `min_interval_seconds`."""
        if self.min_interval_seconds <= 60:  # five-field cron fires at most once a minute anyway
            return
        times: list[datetime] = []
        moment: datetime | None = self.db.run(task_model.database_now)
        while len(times) < 50 and moment is not None:
            moment = cron.next_after(moment)
            if moment is not None:
                times.append(moment)
        gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
        if gaps and min(gaps) < self.min_interval_seconds:
            message = (
                f"cron {cron.expression!r} fires {min(gaps):.0f} s apart; schedules may fire at most "
                f"once every {self.min_interval_seconds} s."
            )
            raise InvalidInput(message, {"cron": [message]})

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

    def _row(self, schedule_id: uuid.UUID, owner: str | None = None) -> Any:
        row = self.db.run(lambda c: schedule_model.get(c, schedule_id, owner))
        if row is None:
            raise ScheduleNotFound("Schedule not found", {"id": str(schedule_id)})
        return row
