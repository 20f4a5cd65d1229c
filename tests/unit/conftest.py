from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import pytest

from app.core.cache_manager import CacheManager
from app.core.database_manager import DatabaseManager
from app.models.migrate import upgrade


@pytest.fixture
def sqlite_db(tmp_path) -> Iterator[DatabaseManager]:
    """A migrated SQLite database: the same migrations and queries as PostgreSQL."""
    db = DatabaseManager(f"sqlite:///{tmp_path / 'tasks.db'}")
    upgrade(db.engine)
    yield db
    db.dispose()


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def cache(fake_redis) -> CacheManager:
    return CacheManager(fake_redis, ttl_seconds=60)
