"""Five-field cron expressions and their next fire time in a time zone.

Standard cron: minute hour day-of-month month day-of-week; each field takes `*`, numbers,
ranges `a-b`, steps `*/n` and `a-b/n`, and lists `a,b`; months and weekdays take names
(jan, mon); weekday 0 and 7 are Sunday. When both day fields are restricted, a day matches
if either does (as in Vixie cron). Times that do not exist locally (the hour skipped when
clocks go forward) are skipped; times that happen twice fire once, the first time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# Long enough for the rarest expression that can fire (29 February on a leap year).
SEARCH_DAYS = 8 * 366


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: list[str] | None = None
    name_base: int = 0


FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, MONTHS, 1),
    _Field("day of week", 0, 7, WEEKDAYS, 0),
)


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split()
        if len(parts) != 5:
            raise CronError(
                f"cron must have 5 fields (minute hour day-of-month month day-of-week), not {len(parts)}."
            )
        values = [_parse_field(part, field) for part, field in zip(parts, FIELDS, strict=True)]
        return cls(
            expression=" ".join(parts),
            minutes=tuple(sorted(values[0])),
            hours=tuple(sorted(values[1])),
            days=frozenset(values[2]),
            months=frozenset(values[3]),
            weekdays=frozenset(d % 7 for d in values[4]),
            any_day=parts[2].startswith("*"),
            any_weekday=parts[4].startswith("*"),
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        day_ok = day.day in self.days
        weekday_ok = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def next_after(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        """The first fire time strictly after `after` (aware), in UTC; None if it never fires."""
        after = after.astimezone(UTC)
        start = (after.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)) + timedelta(minutes=1)
        day = start.date()
        for _ in range(SEARCH_DAYS):
            if self.matches_day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        local = datetime(day.year, day.month, day.day, hour, minute)
                        if local < start:
                            continue
                        fire = _to_utc(local, zone)
                        if fire is not None and fire > after:
                            return fire
            day += timedelta(days=1)
        return None


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or CronError."""
    if name not in _zone_names():
        raise CronError(f"Unknown time zone {name[:64]!r}: use an IANA name such as UTC or Europe/Paris.")
    return ZoneInfo(name)


@functools.cache
def _zone_names() -> frozenset[str]:
    # "localtime" is whatever the host is set to: not a zone a schedule should depend on.
    return frozenset(available_timezones() - {"localtime", "posixrules", "Factory"})


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime | None:
    """A local wall time in UTC; None if the clocks skip it."""
    aware = local.replace(tzinfo=tz)
    utc = aware.astimezone(UTC)
    if utc.astimezone(tz).replace(tzinfo=None) != local:
        return None
    return utc


def _parse_field(text: str, field: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values |= _parse_item(item, field)
    return values


def _parse_item(item: str, field: _Field) -> set[int]:
    where = f"cron {field.name} field {item!r}"
    base, _, step_text = item.partition("/")
    step = 1
    if step_text:
        if not _digits(step_text) or int(step_text) == 0:
            raise CronError(f"{where}: the step must be a positive whole number.")
        step = int(step_text)
    high = 6 if field.name == "day of week" and base == "*" else field.high
    if base == "*":
        low = field.low
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _number(first, field, where), _number(last, field, where)
        if low > high:
            raise CronError(f"{where}: the range runs backwards.")
    else:
        low = _number(base, field, where)
        high = low if not step_text else field.high
    return set(range(low, high + 1, step))


def _number(text: str, field: _Field, where: str) -> int:
    lowered = text.lower()
    if field.names and lowered in field.names:
        return field.names.index(lowered) + field.name_base
    if not _digits(text):
        hint = f" or a name ({', '.join(field.names[:3])}, ...)" if field.names else ""
        raise CronError(f"{where}: expected a number{hint}, *, a range a-b or a step */n.")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{where}: {value} is out of range {field.low}-{field.high}.")
    return value


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 4
