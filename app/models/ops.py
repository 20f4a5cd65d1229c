"""What the processes around the tasks report: workers alive, and when housekeeping last ran.

`workers`: one row per running Celery worker (its hostname), refreshed by the worker's main
process every WORKER_HEARTBEAT_SECONDS and removed when it stops; a worker killed without a
word drops out of `tasker_workers_online` once its row is three heartbeats old.

`housekeeping`: one row per job beat runs (publish-due, recovery-sweep, retention): when it
last completed a pass, its interval, and running totals of what the passes did (for the
recovery sweep: tasks republished, requeued and failed), so the API can report them however
many hosts away beat runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import metadata, tasks, utcnow
from app.models.types import UTCDateTime

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("hostname", sa.String(200), primary_key=True),
    sa.Column("queues", sa.String(500), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("seen_at", UTCDateTime(), nullable=False),
    # JSON: {task type: hash of its parameters' JSON Schema}, the types it serves (NULL: an older worker)
    sa.Column("task_types", sa.Text(), nullable=True),
)

housekeeping = sa.Table(
    "housekeeping",
    metadata,
    sa.Column("job", sa.String(100), primary_key=True),
    sa.Column("interval_seconds", sa.Float, nullable=False),
    sa.Column("last_run_at", UTCDateTime(), nullable=False),
    sa.Column("runs", sa.BigInteger, nullable=False),
    sa.Column("totals", sa.Text, nullable=False),  # JSON: {"republished": 3, ...}
)


def _upsert(conn: Connection, table: sa.Table, key: str, values: Mapping[str, Any]) -> None:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**values)
    update = {name: statement.excluded[name] for name in values if name != key}
    conn.execute(statement.on_conflict_do_update(index_elements=[key], set_=update))


def heartbeat(
    conn: Connection, hostname: str, queues: str, started_at: datetime, task_types: Mapping[str, str]
) -> None:
    values = {
        "hostname": hostname,
        "queues": queues,
        "started_at": started_at,
        "seen_at": utcnow(),
        "task_types": json.dumps(task_types, sort_keys=True),
    }
    _upsert(conn, workers, "hostname", values)


def served_task_types(conn: Connection, since: datetime) -> list[tuple[str, dict[str, str]]]:
    """Per worker seen since `since`: its hostname and the task types it serves (with their hashes)."""
    rows = conn.execute(
        sa.select(workers.c.hostname, workers.c.task_types).where(workers.c.seen_at >= since)
    ).all()
    return [(row.hostname, json.loads(row.task_types) if row.task_types else {}) for row in rows]


def remove_worker(conn: Connection, hostname: str) -> None:
    conn.execute(workers.delete().where(workers.c.hostname == hostname))


def workers_seen_since(conn: Connection, since: datetime) -> int:
    return conn.execute(sa.select(sa.func.count()).where(workers.c.seen_at >= since)).scalar_one()


def record_run(conn: Connection, job: str, interval: float, counts: Mapping[str, int]) -> None:
    """A completed pass of `job`: the time (the database's), and `counts` added to its totals."""
    row = conn.execute(
        sa.select(housekeeping.c.runs, housekeeping.c.totals).where(housekeeping.c.job == job)
    ).first()
    runs, totals = (row.runs, json.loads(row.totals)) if row else (0, {})
    for name, count in counts.items():
        totals[name] = totals.get(name, 0) + int(count)
    values = {
        "job": job,
        "interval_seconds": interval,
        "last_run_at": utcnow(),
        "runs": runs + 1,
        "totals": json.dumps(totals, sort_keys=True),
    }
    _upsert(conn, housekeeping, "job", values)


def totals_of(run: Row) -> dict[str, int]:
    return json.loads(run.totals)


def housekeeping_runs(conn: Connection) -> list[Row]:
    return list(conn.execute(sa.select(housekeeping).order_by(housekeeping.c.job)))


def counts_by_status(
    conn: Connection, owner: str | None = None, statuses: Iterable[str] | None = None
) -> dict[str, int]:
    """Rows per status (one owner's when `owner` is given, of `statuses` when given): a count over
    the whole table for the finished ones, which callers keep for a few seconds
    (app/core/monitor.py's Memo)."""
    query = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
    if statuses is not None:
        query = query.where(tasks.c.status.in_(list(statuses)))
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return {status: count for status, count in conn.execute(query)}


def oldest_pending(conn: Connection, queue: str, owner: str | None = None) -> datetime | None:
    """The creation time of `queue`'s oldest PENDING row (an index walk, not a scan of every row)."""
    query = (
        sa.select(tasks.c.created_at)
        .where(tasks.c.status == "PENDING", tasks.c.queue == queue)
        .order_by(tasks.c.created_at)
        .limit(1)
    )
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return conn.execute(query).scalar()


def statement_timeout(conn: Connection, milliseconds: int) -> None:
    """Bound every statement of this transaction (PostgreSQL; SQLite is local and has none)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(milliseconds)}"))


PERCENTILES = (0.5, 0.95, 0.99)


def finished_counts(conn: Connection, since: datetime, owner: str | None) -> list[Row]:
    """(name, status, count) of the tasks that reached a terminal status since `since`."""
    query = (
        sa.select(tasks.c.name, tasks.c.status, sa.func.count())
        .where(tasks.c.completed_at >= since)
        .group_by(tasks.c.name, tasks.c.status)
    )
    if owner is not None:
        query = query.where(tasks.c.owner == owner)
    return list(conn.execute(query))


def finished_times(conn: Connection, since: datetime, owner: str | None) -> dict[str, dict[str, list]]:
    """Per task type, the run time (last start to outcome) and the wait (created or due to last
    start) percentiles in PERCENTILES order, in seconds, over the tasks finished since `since`."""
    where = [tasks.c.completed_at >= since, tasks.c.started_at.is_not(None)]
    if owner is not None:
        where.append(tasks.c.owner == owner)
    if conn.dialect.name == "postgresql":
        run = sa.extract("epoch", tasks.c.completed_at - tasks.c.started_at)
        wait = sa.extract("epoch", tasks.c.started_at - sa.func.coalesce(tasks.c.run_at, tasks.c.created_at))
        columns = [sa.func.percentile_cont(p).within_group(run) for p in PERCENTILES]
        columns += [sa.func.percentile_cont(p).within_group(wait) for p in PERCENTILES]
        query = sa.select(tasks.c.name, *columns).where(*where).group_by(tasks.c.name)
        n = len(PERCENTILES)
        return {
            row[0]: {"run": [float(v) for v in row[1 : 1 + n]], "wait": [float(v) for v in row[1 + n :]]}
            for row in conn.execute(query)
        }
    # SQLite (the embedded, one-machine stack): no percentile function; the rows are few.
    query = sa.select(
        tasks.c.name, tasks.c.created_at, tasks.c.run_at, tasks.c.started_at, tasks.c.completed_at
    ).where(*where)
    samples: dict[str, dict[str, list[float]]] = {}
    for name, created, due, started, completed in conn.execute(query):
        entry = samples.setdefault(name, {"run": [], "wait": []})
        entry["run"].append((completed - started).total_seconds())
        entry["wait"].append((started - (due or created)).total_seconds())
    return {
        name: {kind: [percentile(sorted(values), p) for p in PERCENTILES] for kind, values in entry.items()}
        for name, entry in samples.items()
    }


def percentile(ordered: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
