from __future__ import annotations

import pytest

from app.tasks.errors import TaskFailed
from app.tasks.task_functions import MAX_RETRY_DELAY_SECONDS, add, longest_run, retry_delay


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
