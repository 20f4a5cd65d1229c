"""How rows are shown: the task resource, the reference output, the list cursor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from app.core.errors import InvalidInput
from app.core.resources import decode_cursor, encode_cursor, task_output, task_resource


def row(**values):
    base = dict.fromkeys(
        ("result", "error", "progress", "progress_message", "started_at", "completed_at", "retry_of",
         "cancel_requested_at", "run_at", "schedule_id", "scheduled_for")
    )  # fmt: skip
    created = datetime(2026, 12, 1, 13, 0, 0, 123000, tzinfo=UTC)
    base |= {"id": uuid.uuid4(), "name": "sum_two_numbers", "parameters": {"a": 1}, "status": "PENDING"}
    base |= {"attempts": 0, "priority": 5, "queue": "default", "created_at": created}
    return SimpleNamespace(**(base | values))


def test_times_are_utc_with_a_z_whatever_zone_the_row_has():
    paris = timezone(timedelta(hours=1))
    completed = datetime(2026, 12, 1, 13, 0, 1, 1000, tzinfo=UTC)
    resource = task_resource(
        row(started_at=datetime(2026, 12, 1, 14, 0, 1, tzinfo=paris), completed_at=completed)
    )
    assert resource["created_at"] == "2026-12-01T13:00:00.123000Z"
    # A whole second keeps its microseconds: every time has one width, so the strings sort as
    # the times do (with "13:00:01Z", ".001000Z" after it would sort before it).
    assert resource["started_at"] == "2026-12-01T13:00:01.000000Z"
    assert resource["created_at"] < resource["started_at"] < resource["completed_at"]


def test_ids_are_strings_and_cancellation_is_a_flag():
    retry_of = uuid.uuid4()
    resource = task_resource(row(retry_of=retry_of, cancel_requested_at=datetime.now(UTC)))
    assert resource["retry_of"] == str(retry_of) and resource["cancel_requested"] is True
    assert task_resource(row())["cancel_requested"] is False


def test_the_reference_output_shows_progress_only_once_reported():
    assert task_output("STARTED", None, None) == {"status": "STARTED", "result": None, "error": None}
    assert task_output("STARTED", None, None, 40, "4 of 10")["progress"] == 40


def test_a_cursor_comes_back_as_the_row_it_was_made_from():
    made = row()
    assert decode_cursor(encode_cursor(made)) == (made.created_at, made.id)


@pytest.mark.parametrize("cursor", ["garbage!", "WyJ4Il0", "", "e30"])
def test_a_cursor_not_made_here_is_a_400_naming_it(cursor):
    with pytest.raises(InvalidInput) as refused:
        decode_cursor(cursor)
    assert "cursor" in refused.value.details
