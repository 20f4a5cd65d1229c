"""The api_keys table: who may call the API, as which owner, and with which rate limit."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from app.models.task import metadata, utcnow
from app.models.types import UTCDateTime

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("owner", sa.String(100), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),  # HMAC-SHA256 of the key, hex
    sa.Column("hint", sa.String(20), nullable=False),  # the prefix and first characters, to tell keys apart
    sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("rate_limit", sa.String(200)),  # Flask-Limiter syntax; None: the deployment's default
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=sa.func.now()),
    sa.Column("last_used_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
    sa.Index("ux_api_keys_key_hash", "key_hash", unique=True),
)


def insert(conn: Connection, key_id: uuid.UUID, **values: Any) -> None:
    conn.execute(api_keys.insert().values(id=key_id, created_at=utcnow(), **values))


def by_hash(conn: Connection, key_hash: str) -> Row | None:
    return conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == key_hash)).first()


def get(conn: Connection, key_id: uuid.UUID) -> Row | None:
    return conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()


def list_all(conn: Connection, include_revoked: bool = False) -> list[Row]:
    query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return list(conn.execute(query))


def update(conn: Connection, key_id: uuid.UUID, **values: Any) -> bool:
    query = api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    return conn.execute(query.values(**values)).rowcount == 1


def revoke(conn: Connection, key_id: uuid.UUID) -> bool:
    query = api_keys.update().where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    return conn.execute(query.values(revoked_at=utcnow())).rowcount == 1


def active_for(conn: Connection, owner: str) -> int:
    """How many unrevoked keys `owner` has."""
    query = sa.select(sa.func.count()).where(api_keys.c.owner == owner, api_keys.c.revoked_at.is_(None))
    return conn.execute(query).scalar_one()


def touch(conn: Connection, used: dict[uuid.UUID, datetime]) -> None:
    """Record when each key was last used (one statement per key, at most once a minute each)."""
    for key_id, when in used.items():
        conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(last_used_at=when))


# Dashboard sessions ended by a sign-out, until their cookies would have expired anyway.
revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)


def revoke_session(conn: Connection, session_id: str, expires_at: datetime) -> None:
    """End a dashboard session for good (and forget those past their expiry)."""
    conn.execute(revoked_sessions.delete().where(revoked_sessions.c.expires_at < utcnow()))
    if not conn.execute(sa.select(revoked_sessions.c.id).where(revoked_sessions.c.id == session_id)).first():
        conn.execute(revoked_sessions.insert().values(id=session_id, expires_at=expires_at))


def session_revoked(conn: Connection, session_id: str) -> bool:
    query = sa.select(revoked_sessions.c.id).where(revoked_sessions.c.id == session_id)
    return conn.execute(query).first() is not None
