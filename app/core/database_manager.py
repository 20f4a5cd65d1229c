"""One pooled SQLAlchemy engine per process, and transactions that report outages."""

from __future__ import annotations

import fcntl
import logging
import os
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from app.core.errors import DatabaseUnavailable
from app.core.private import private_dir, private_file

logger = logging.getLogger(__name__)
T = TypeVar("T")


def normalize_url(url: str) -> str:
    """Accept the common `postgres://` spelling and pick the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://") :]
    return url


class DatabaseManager:
    """Owns the engine; the engine is created lazily and again after a fork."""

    def __init__(self, url: str, pool_size: int = 10):
        self.url = normalize_url(url)
        self.pool_size = pool_size
        self._engine: Engine | None = None
        self._pid = 0

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != os.getpid():
            if self._engine is not None:
                # A pool inherited across fork shares sockets with the parent: drop it unclosed.
                self._engine.dispose(close=False)
            self._engine = self._create_engine()
            self._pid = os.getpid()
        return self._engine

    def _create_engine(self) -> Engine:
        if self.url.startswith("sqlite"):
            return _sqlite_engine(self.url)
        return sa.create_engine(
            self.url,
            pool_size=self.pool_size,
            max_overflow=self.pool_size,
            pool_timeout=5,
            pool_recycle=1800,
            connect_args={"connect_timeout": 3, "application_name": "tasker"},
        )

    def run(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in one transaction; a dropped connection is retried once."""
        return self._retrying(self._in_transaction, work)

    def run_statement(self, work: Callable[[Connection], T]) -> T:
        """Run `work`, which sends exactly one statement, as a transaction of its own.

        On PostgreSQL the statement goes out in autocommit mode: one round trip instead of three
        (BEGIN, the statement, COMMIT), and just as durable, since the server commits it before
        answering. Elsewhere this is run().
        """
        if self.engine.dialect.name != "postgresql":
            return self.run(work)
        return self._retrying(self._autocommitted, work)

    def _in_transaction(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def _autocommitted(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as conn:
            # psycopg2 only sends BEGIN when autocommit is off; switching it is local, no round
            # trip (SQLAlchemy's isolation_level option would also send a SET on return).
            dbapi_connection = conn.connection.dbapi_connection
            dbapi_connection.autocommit = True
            try:
                return work(conn)
            finally:
                if not dbapi_connection.closed:
                    dbapi_connection.autocommit = False

    def _retrying(
        self, attempt_with: Callable[[Callable[[Connection], T]], T], work: Callable[[Connection], T]
    ) -> T:
        for attempt in (1, 2):
            try:
                return attempt_with(work)
            except (OperationalError, InterfaceError) as exc:
                if attempt == 1 and exc.connection_invalidated:
                    logger.warning("database connection was lost; retrying once")
                    continue
                raise DatabaseUnavailable(_reason(exc)) from exc
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise DatabaseUnavailable(_reason(exc)) from exc
                raise
        raise AssertionError("unreachable")

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Yield True if this process holds lock `name`, False if another one does.

        PostgreSQL: a session advisory lock, so two beat processes never overlap;
        SQLite (one machine): an flock on a file beside the database.
        """
        if self.engine.dialect.name == "postgresql":
            key = zlib.crc32(name.encode())
            with self.engine.connect() as conn:
                held = conn.scalar(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                conn.commit()
                try:
                    yield bool(held)
                finally:
                    if held:
                        conn.scalar(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        conn.commit()
            return
        path = Path(f"{self.engine.url.database or 'memory'}.{name}.lock")
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless a trivial query succeeds."""
        self.run(lambda conn: conn.execute(sa.text("SELECT 1")))

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _sqlite_engine(url: str) -> Engine:
    """SQLite for the embedded default: WAL so readers never block the writer, a busy timeout."""
    path = sa.engine.make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:"):
        try:
            private_file(private_dir(Path(path).parent) / Path(path).name)
        except OSError as exc:  # SQLite then reports the path it cannot open
            logger.warning("cannot create the folder of %s: %s", path, exc)
    engine = sa.create_engine(url, connect_args={"timeout": 15})

    @sa.event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=15000", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return engine


def _reason(exc: DBAPIError) -> str:
    text = str(exc.orig) if exc.orig is not None else str(exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
