"""Cron expressions in a time zone, evaluated by cronsim.

Five fields (minute hour day-of-month month day-of-week) with `*`, numbers, names (jan, mon),
ranges, steps and lists, or one of @hourly, @daily, @weekly, @monthly, @yearly. cronsim was
chosen over croniter because it follows Debian (Vixie) cron across daylight-saving changes:
a job at a fixed time in the skipped hour runs right after the jump, a job in the repeated
hour runs once, and interval jobs (`*/15 * * * *`, `0 * * * *`) run on the real clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day of month", "1-31"),
    ("month", "1-12 or jan-dec"),
    ("day of week", "0-7 (0 and 7 are Sunday) or sun-sat"),
)


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class Cron:
    expression: str  # as given, white space folded: what is stored and shown
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, timezone: str = "UTC") -> Cron:
        """A cron in `timezone`; CronError names the field, its value and the rule it breaks."""
        cron = cls(" ".join(expression.split()), zone(timezone))
        parts = cron._fields.split()
        if len(parts) != len(FIELDS):
            raise CronError(
                f"cron must have 5 fields (minute hour day-of-month month day-of-week) or be one of "
                f"{', '.join(ALIASES)}; it has {len(parts)}."
            )
        try:
            CronSim(cron._fields, datetime.now(cron.zone))
        except CronSimError:
            raise CronError(_describe(parts)) from None
        return cron

    @property
    def _fields(self) -> str:
        return ALIASES.get(self.expression.lower(), self.expression)

    def next_after(self, after: datetime) -> datetime | None:
        """The first fire time strictly after `after` (aware), in UTC; None if it never fires."""
        fire = next(CronSim(self._fields, after.astimezone(self.zone)), None)
        return fire.astimezone(UTC) if fire is not None else None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or CronError."""
    if name not in _zone_names():
        raise CronError(f"Unknown time zone {name[:64]!r}: use an IANA name such as UTC or Europe/Paris.")
    return ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    # "localtime" is whatever the host is set to: not a zone a schedule should depend on.
    return frozenset(available_timezones() - {"localtime", "posixrules", "Factory"})


def _describe(parts: list[str]) -> str:
    """Which field cronsim refused: each is tried alone with the others set to `*`."""
    for index, (name, values) in enumerate(FIELDS):
        alone = " ".join(part if i == index else "*" for i, part in enumerate(parts))
        try:
            CronSim(alone, datetime.now(UTC))
        except CronSimError:
            return (
                f"cron {name} field {parts[index][:50]!r} is not valid: use {values}, *, "
                "a range a-b, a step */n or a-b/n, or a list a,b."
            )
    return f"cron {' '.join(parts)!r} never fires (no such date)."
