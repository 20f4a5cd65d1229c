"""Named rate limits: at most `rate` runs of the task types that consume a limit start, across every
worker, with up to `burst` at once (a limit `openai` of "60/minute" keeps `query_chatgpt` under
OpenAI's quota however many workers run it): no window of w seconds sees more than rate * w +
burst starts.

An admin sets a limit (`PUT /api/v1/limits/<name>`); a task type consumes the limits it declares
(`@task(limits=["openai"])`) and those TASK_LIMITS gives it. Until a limit is set, its types run
unpaced.

The token is taken where every run starts, the worker's claim, so every path is paced alike (a
submit, a retry, a workflow's step, a schedule's run). Tokens are reserved, never refused
(app/models/rate_limits.py): a task whose token is for later does not hold its worker; it waits
as WAITING (`waiting_for: {"rate_limit": name, "until": time}`) with no message, and beat's due
loop publishes it when its time comes, its token held, so its claim takes no other (unless the
token's time is more than a burst's worth past: a late start would crowd the window, so it takes
another). A task with a concurrency key frees its slot while it waits.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from limits import parse as parse_rate
from sqlalchemy.engine import Connection

from app.core.concurrency import Admissions
from app.core.database_manager import DatabaseManager
from app.core.errors import InvalidInput, NotFound
from app.models import rate_limits as limit_model
from app.models import task as task_model
from app.models.task import TaskStatus

logger = logging.getLogger(__name__)

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_RULE = "1 to 100 letters, digits, '_', '.' or '-', starting with a letter or digit."
MAX_BURST = 10_000
SLACK_SECONDS = 0.005  # a token for sooner than this runs now
CLAIMABLE = (TaskStatus.PENDING, TaskStatus.RETRYING)


def interval_of(rate: str) -> float:
    """Seconds between two tokens of `rate` ("10/second", "60/minute"); InvalidInput naming `rate`."""
    try:
        item = parse_rate(rate)
    except ValueError:
        item = None
    if item is None or item.amount < 1:
        rule = 'Must be "<count>/<second|minute|hour|day>", e.g. "10/second" or "60/minute".'
        raise InvalidInput(f"Invalid rate: {rule}", {"rate": [rule]})
    return item.get_expiry() / item.amount


class RateLimits:
    def __init__(self, db: DatabaseManager, admissions: Admissions, horizon: float = 1.0):
        self.db = db
        self.admissions = admissions
        # Beat's due loop runs this often: it publishes the tasks whose time comes before its next
        # pass, each not to start before its time (an ETA), so a task starts on time, not on a tick.
        self.horizon = timedelta(seconds=horizon)

    def put(self, name: str, rate: str, burst: int) -> dict[str, Any]:
        if not NAME.fullmatch(name):
            raise InvalidInput(f"Invalid name: {NAME_RULE}", {"name": [NAME_RULE]})
        interval = interval_of(rate)
        row = self.db.run(lambda c: limit_model.put(c, name, rate, interval, burst))
        return {"name": row.name, "rate": row.rate, "burst": row.burst}

    def delete(self, name: str) -> None:
        if not self.db.run(lambda c: limit_model.delete(c, name)):
            raise NotFound(f"There is no rate limit {name!r}.", {"name": ["No such rate limit."]})

    def summary(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Each limit set: its rate, burst, the tokens free now, and the tasks waiting their turn
        (of `owner`; None: everyone's)."""

        def read(conn: Connection) -> tuple[Any, list[Any], dict[str, int]]:
            now = task_model.database_now(conn)
            return now, limit_model.every(conn), limit_model.waiting_counts(conn, owner)

        now, rows, waiting = self.db.run(read)
        epoch = now.timestamp()
        return [
            {
                "name": row.name,
                "rate": row.rate,
                "burst": row.burst,
                "tokens": _tokens(row, epoch),
                "waiting": waiting.get(row.name, 0),
            }
            for row in rows
        ]

    def take(self, task_id: uuid.UUID, names: Iterable[str]) -> datetime | None:
        """The task's tokens taken before its claim: None to run now (or when it is not to run, or
        holds its token already); else the time it waits until, WAITING with no message."""

        def turn(conn: Connection) -> tuple[datetime | None, list[Any]]:
            row = limit_model.turn_of(conn, task_id)
            if row is None or row.status not in CLAIMABLE:
                return None, []
            epoch = task_model.database_now(conn).timestamp()
            if row.rate_until is not None and not _stale(
                row.rate_until, epoch, limit_model.graces(conn, names)
            ):
                return None, []  # its token is held: it runs
            times = [(at, name) for name in sorted(names) if (at := limit_model.reserve(conn, name, epoch))]
            if not times or max(times)[0] <= epoch + SLACK_SECONDS:
                return None, []
            at, name = max(times)
            until = datetime.fromtimestamp(at, UTC)
            key = row.concurrency_key
            if key is not None:
                self.admissions.lock(conn, key)
            if not limit_model.wait(conn, task_id, name, until):
                return None, []  # it moved on meanwhile
            return until, [] if key is None else self.admissions.admit(conn, key)

        until, admitted = self.db.run(turn)
        if until is not None:
            self.admissions.set_aside(task_id, admitted)
        return until

    def release_due(self) -> int:
        """Beat's: the tasks whose turn has come published (those with a key, admitted)."""

        def released(conn: Connection) -> list[Any]:
            now = task_model.database_now(conn)
            rows = limit_model.due(conn, now, now + self.horizon)
            messages = [
                dataclasses.replace(self.admissions.message(row), eta=max(now, row.rate_until))
                for row in rows
                if row.concurrency_key is None
            ]
            keys = [row.concurrency_key for row in rows if row.concurrency_key is not None]
            return messages + self.admissions.admit_keys(conn, keys)

        messages = self.db.run(released)
        self.admissions.publish(messages)
        return len(messages)


def _stale(until: datetime, now: float, graces: list[float]) -> bool:
    """Whether a held token is spent too late to count: more than a burst's worth of tokens after
    its time (beat published its task late), when starting now would crowd the limit's window.
    Then the task takes another token."""
    return bool(graces) and now - until.timestamp() > min(graces)


def _tokens(row: Any, now: float) -> int:
    """The tokens of a limit free at `now`: its burst, less those taken within the last bursts."""
    if row.tat is None:
        return row.burst
    owed = max(0.0, row.tat - now) / row.interval_seconds
    return max(0, min(row.burst, int(row.burst - owed + 1e-9)))
