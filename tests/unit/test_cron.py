"""Cron expressions: parsing, errors naming the field, next fire times across time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.core.cron import Cron, CronError, zone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def next_fire(expression: str, after: datetime, tz: str = "UTC") -> datetime | None:
    return Cron.parse(expression).next_after(after, zone(tz))


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", utc(2026, 1, 1, 0, 0, 30), utc(2026, 1, 1, 0, 1)),
        ("* * * * *", utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2)),  # strictly after
        ("*/5 * * * *", utc(2026, 1, 1, 0, 3), utc(2026, 1, 1, 0, 5)),
        ("*/15 9-17 * * *", utc(2026, 1, 1, 17, 46), utc(2026, 1, 2, 9, 0)),
        ("0 0 1 * *", utc(2026, 12, 15), utc(2027, 1, 1)),
        ("30 4 1,15 * *", utc(2026, 1, 2), utc(2026, 1, 15, 4, 30)),
        ("0 12 * * mon-fri", utc(2026, 11, 27, 13), utc(2026, 11, 30, 12)),  # Friday afternoon -> Monday
        ("0 9 * * 0", utc(2026, 11, 24), utc(2026, 11, 29, 9)),  # 0 is Sunday
        ("0 9 * * 7", utc(2026, 11, 24), utc(2026, 11, 29, 9)),  # so is 7
        ("0 9 * * SUN", utc(2026, 11, 24), utc(2026, 11, 29, 9)),
        ("0 0 1 jan *", utc(2026, 6, 1), utc(2027, 1, 1)),
        ("0 0 29 2 *", utc(2026, 3, 1), utc(2028, 2, 29)),
        ("0 9 1 * mon", utc(2026, 11, 24), utc(2026, 11, 30, 9)),  # both days restricted: either
        ("0 9 */10 * *", utc(2026, 11, 24), utc(2026, 12, 1, 9)),  # 1, 11, 21, 31
        ("5-10/5 * * * *", utc(2026, 1, 1, 0, 6), utc(2026, 1, 1, 0, 10)),
        ("0 0 31 2 *", utc(2026, 1, 1), None),  # never
    ],
)
def test_next_fire_in_utc(expression, after, expected):
    assert next_fire(expression, after) == expected


def test_time_zones_and_daylight_saving():
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_fire("0 9 * * *", utc(2026, 1, 10), "Europe/Paris") == utc(2026, 1, 10, 8)
    assert next_fire("0 9 * * *", utc(2026, 7, 10), "Europe/Paris") == utc(2026, 7, 10, 7)
    # 02:30 does not exist in Paris on 29 March 2026: skipped, next the day after.
    assert next_fire("30 2 * * *", utc(2026, 3, 28, 12), "Europe/Paris") == utc(2026, 3, 30, 0, 30)
    # 02:30 happens twice on 25 October 2026: it fires once, the first time (CEST, UTC+2).
    first = next_fire("30 2 * * *", utc(2026, 10, 24, 12), "Europe/Paris")
    assert first == utc(2026, 10, 25, 0, 30)
    assert next_fire("30 2 * * *", first, "Europe/Paris") == utc(2026, 10, 26, 1, 30)
    # An hourly schedule across the autumn change fires every real hour, 01:00 to 03:00 local.
    fires, after = [], utc(2026, 10, 24, 22, 30)
    for _ in range(4):
        after = next_fire("0 * * * *", after, "Europe/Paris")
        fires.append(after)
    assert fires == [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0), utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)]


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 0 * *", "day of month field '0'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day of week field '8'"),
        ("*/0 * * * *", "step must be a positive whole number"),
        ("*/x * * * *", "step must be a positive whole number"),
        ("10-5 * * * *", "range runs backwards"),
        ("1,,2 * * * *", "minute field ''"),
        ("* * * foo *", "month field 'foo'"),
        ("\u00b2 * * * *", "expected a number"),
        ("99999999999 * * * *", "expected a number"),
    ],
)
def test_bad_expressions_say_which_field_and_why(expression, words):
    with pytest.raises(CronError, match=None) as raised:
        Cron.parse(expression)
    assert words in str(raised.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "utc", "localtime"])
def test_unknown_time_zones(name):
    with pytest.raises(CronError, match="Unknown time zone"):
        zone(name)


def test_the_expression_is_kept_normalised():
    assert Cron.parse("  */5   *  * * * ").expression == "*/5 * * * *"
