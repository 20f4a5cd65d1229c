"""Cron expressions: errors naming the field, next fire times across time zones and DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.core.cron import Cron, CronError, zone


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def next_fire(expression: str, after: datetime, tz: str = "UTC") -> datetime | None:
    return Cron.parse(expression, tz).next_after(after)


def fires(expression: str, after: datetime, tz: str, count: int) -> list[datetime]:
    found = []
    for _ in range(count):
        after = next_fire(expression, after, tz)
        found.append(after)
    return found


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
        ("@hourly", utc(2026, 1, 1, 0, 6), utc(2026, 1, 1, 1)),
        ("@daily", utc(2026, 1, 1, 0, 6), utc(2026, 1, 2)),
        ("@weekly", utc(2026, 11, 24), utc(2026, 11, 29)),  # Sunday midnight
        ("@monthly", utc(2026, 11, 24), utc(2026, 12, 1)),
        ("@yearly", utc(2026, 11, 24), utc(2027, 1, 1)),
    ],
)
def test_next_fire_in_utc(expression, after, expected):
    assert next_fire(expression, after) == expected


def test_time_zones():
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert next_fire("0 9 * * *", utc(2026, 1, 10), "Europe/Paris") == utc(2026, 1, 10, 8)
    assert next_fire("0 9 * * *", utc(2026, 7, 10), "Europe/Paris") == utc(2026, 7, 10, 7)


# Clocks go forward: Paris 29 March 2026 02:00 -> 03:00 (UTC+1 -> +2); New York 8 March 2026 02:00 -> 03:00
# (UTC-5 -> -4). Back: Paris 25 October 03:00 -> 02:00; New York 1 November 02:00 -> 01:00.
@pytest.mark.parametrize(
    ("tz", "before_jump", "right_after_jump", "next_day"),
    [
        ("Europe/Paris", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1), utc(2026, 3, 30, 0, 30)),
        ("America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)),
    ],
)
def test_a_time_in_the_skipped_hour_runs_right_after_the_jump(tz, before_jump, right_after_jump, next_day):
    # As Debian cron does: 02:30 does not exist that night, so the job runs at 03:00.
    assert fires("30 2 * * *", before_jump, tz, 2) == [right_after_jump, next_day]


@pytest.mark.parametrize(
    ("tz", "expression", "before", "once", "next_day"),
    [
        ("Europe/Paris", "30 2 * * *", utc(2026, 10, 24, 12),
         utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        ("America/New_York", "30 1 * * *", utc(2026, 10, 31, 12),
         utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
    ],
)  # fmt: skip
def test_a_time_in_the_repeated_hour_runs_once(tz, expression, before, once, next_day):
    assert fires(expression, before, tz, 2) == [once, next_day]


@pytest.mark.parametrize(
    ("tz", "after", "expected"),
    [
        # Autumn in Paris: every real hour, though 02:00 local happens twice.
        ("Europe/Paris", utc(2026, 10, 24, 22, 30), [utc(2026, 10, 24, 23), utc(2026, 10, 25, 0),
                                                   utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]),
        # Spring in New York: every real hour, though 02:00 local never happens.
        ("America/New_York", utc(2026, 3, 8, 5, 30), [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7),
                                                     utc(2026, 3, 8, 8), utc(2026, 3, 8, 9)]),
    ],
)  # fmt: skip
def test_interval_jobs_run_on_the_real_clock(tz, after, expected):
    assert fires("0 * * * *", after, tz, 4) == expected


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * *", "5 fields"),
        ("* * * * * *", "5 fields"),
        ("@often", "5 fields"),
        ("60 * * * *", "minute field '60' is not valid: use 0-59"),
        ("* 24 * * *", "hour field '24'"),
        ("* * 0 * *", "day of month field '0'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * * 8", "day of week field '8'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("*/x * * * *", "minute field '*/x'"),
        ("10-5 * * * *", "minute field '10-5'"),
        ("1,,2 * * * *", "minute field '1,,2'"),
        ("* * * foo *", "month field 'foo'"),
        ("\u00b2 * * * *", "minute field"),
        ("99999999999 * * * *", "minute field"),
        ("0 0 31 2 *", "never fires (no such date)"),  # no 31 February
    ],
)
def test_bad_expressions_say_which_field_and_why(expression, words):
    with pytest.raises(CronError) as raised:
        Cron.parse(expression)
    assert words in str(raised.value)


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "utc", "localtime"])
def test_unknown_time_zones(name):
    with pytest.raises(CronError, match="Unknown time zone"):
        zone(name)


def test_the_expression_is_kept_normalised():
    assert Cron.parse("  */5   *  * * * ").expression == "*/5 * * * *"
