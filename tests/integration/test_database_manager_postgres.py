"""DatabaseManager on a real PostgreSQL: one round trip per single statement, and its recovery."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from psycopg2.extensions import TRANSACTION_STATUS_IDLE, TRANSACTION_STATUS_INTRANS

from app.core.database_manager import DatabaseManager


@pytest.fixture
def pg_db(database_url):
    db = DatabaseManager(database_url, pool_size=1)  # one connection: every call reuses it
    db.run(lambda c: c.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (n int primary key)")))
    db.run(lambda c: c.execute(sa.text("DELETE FROM probe")))
    yield db
    db.run(lambda c: c.execute(sa.text("DROP TABLE probe")))
    db.dispose()


def _transaction_status(conn) -> int:
    return conn.connection.dbapi_connection.get_transaction_status()


def test_a_single_statement_is_sent_without_begin_or_commit(pg_db):
    def insert(conn):
        conn.execute(sa.text("INSERT INTO probe VALUES (1)"))
        return _transaction_status(conn)

    # After the statement no transaction is open on the server: nothing was sent but the statement.
    assert pg_db.run_statement(insert) == TRANSACTION_STATUS_IDLE
    assert pg_db.run(lambda c: c.scalar(sa.text("SELECT count(*) FROM probe"))) == 1
    # The same pooled connection is transactional again for run(): a failing unit leaves nothing.
    assert pg_db.run(lambda c: (c.execute(sa.text("SELECT 1")), _transaction_status(c))[1]) == (
        TRANSACTION_STATUS_INTRANS
    )
    with pytest.raises(ZeroDivisionError):
        pg_db.run(lambda c: (c.execute(sa.text("INSERT INTO probe VALUES (2)")), 1 / 0))
    assert pg_db.run(lambda c: c.scalar(sa.text("SELECT count(*) FROM probe"))) == 1


def test_a_single_statement_survives_a_dropped_connection(pg_db):
    pid = pg_db.run_statement(lambda c: c.scalar(sa.text("SELECT pg_backend_pid()")))
    admin = sa.create_engine(pg_db.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    pg_db.run_statement(lambda c: c.execute(sa.text("INSERT INTO probe VALUES (3)")))
    assert pg_db.run(lambda c: c.scalar(sa.text("SELECT n FROM probe"))) == 3
