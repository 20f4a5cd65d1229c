from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from app.core.database_manager import DatabaseManager, normalize_url
from app.core.errors import DatabaseUnavailable
from app.models.migrate import upgrade


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalize_url_picks_psycopg2(url, expected):
    assert normalize_url(url) == expected


def test_an_unreachable_database_raises_database_unavailable():
    db = DatabaseManager("postgresql://postgres@127.0.0.1:1/none")
    with pytest.raises(DatabaseUnavailable) as caught:
        db.ping()
    assert caught.value.dependency == "database"
    assert "127.0.0.1" in caught.value.details["reason"]


def test_errors_that_are_not_outages_are_not_hidden(sqlite_db):
    with pytest.raises(sa.exc.IntegrityError):
        sqlite_db.run(lambda c: c.execute(sa.text("INSERT INTO tasks (id) VALUES (NULL)")))


def test_the_engine_is_replaced_after_a_fork(sqlite_db):
    first = sqlite_db.engine
    assert sqlite_db.engine is first
    sqlite_db._pid = os.getpid() + 1  # what a forked child sees
    assert sqlite_db.engine is not first


def test_migrations_are_idempotent(tmp_path):
    db = DatabaseManager(f"sqlite:///{tmp_path / 'twice.db'}")
    upgrade(db.engine)
    upgrade(db.engine)
    assert sa.inspect(db.engine).has_table("tasks")
    db.dispose()


def test_a_single_statement_on_sqlite_is_a_transaction(sqlite_db):
    assert sqlite_db.run_statement(lambda c: c.scalar(sa.text("SELECT count(*) FROM tasks"))) == 0
