from __future__ import annotations

import pytest

from app.tasks.base import MAX_RETRY_DELAY_SECONDS, retry_delay
from app.tasks.errors import TaskFailed
from app.tasks.task_functions import add, longest_run, process_records


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(5, 10, 15), (1, 2.5, 3.5), (-1, 1, 0), (0.1, 0.2, 0.1 + 0.2), (2**53 - 1, 1, 2**53)],
)
def test_add(a, b, expected):
    assert add(a, b) == expected
    assert type(add(a, b)) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aaabbccccdd", 4),
        ("", 0),
        ("a", 1),
        ("abc", 1),
        ("aAaA", 1),
        ("zzzZZZZ", 4),
        ("  x", 2),
        ("ab" * 50_000, 1),
    ],
)
def test_longest_run(text, expected):
    assert longest_run(text) == expected


def test_retry_delay_grows_and_is_capped():
    delays = [retry_delay(n, 1.0, None) for n in range(4)]
    for n, delay in enumerate(delays):
        assert 2**n <= delay <= 2**n + 1
    assert retry_delay(20, 1.0, None) == MAX_RETRY_DELAY_SECONDS


def test_retry_delay_honours_retry_after():
    assert retry_delay(0, 0.1, 7) == 7
    with pytest.raises(TaskFailed, match="asked to wait 3600 s"):
        retry_delay(0, 0.1, 3600)


def run_process(duration, records, fail_at=None):
    steps, slept = [], []
    result = process_records(duration, records, fail_at, lambda p, n: steps.append((p, n)), slept.append)
    return result, steps, slept


def test_process_records_reports_each_step():
    result, steps, slept = run_process(2, 1000)
    assert len(steps) == 20 and steps[0] == (5, 50) and steps[-1] == (100, 1000)
    assert [p for p, _ in steps] == sorted(p for p, _ in steps)
    assert sum(slept) == pytest.approx(2) and max(slept) <= 1
    assert (result["records_processed"], result["steps"], result["duration_seconds"]) == (1000, 20, 2)


def test_long_runs_take_steps_of_a_second_at_most():
    _, steps, slept = run_process(90, 10)
    assert len(steps) == 90 and max(slept) == pytest.approx(1)


@pytest.mark.parametrize(("fail_at", "reported"), [(0, 0), (50, 10), (100, 20)])
def test_process_records_fails_on_purpose(fail_at, reported):
    steps = []
    with pytest.raises(TaskFailed, match=f"Failed on purpose at {fail_at}% \\(fail_at_percent={fail_at}\\)"):
        process_records(1, 100, fail_at, lambda p, n: steps.append(p), lambda seconds: None)
    assert len(steps) == reported
