"""API keys: made and shown once, stored as a keyed hash, checked on every request.

A key looks like `tsk_` + 32 random base62 characters (190 bits) + a 6-character CRC32 checksum,
GitHub's token format: the prefix lets secret scanners find a leaked key, and the checksum lets
them (and Tasker) tell a real key from a random string without a lookup.

Only HMAC-SHA256(SECRET_KEY, key) is stored. A password hash (bcrypt, argon2) is made slow so
guessing a low-entropy password takes long; a 190-bit random key cannot be guessed however fast
the hash, so a slow hash would only make every request slower. The HMAC's secret means a copy of
the table alone does not let anyone test candidate keys offline.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import secrets
import string
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from marshmallow import Schema, fields

from app.core.database_manager import DatabaseManager
from app.core.errors import DatabaseUnavailable, NotFound
from app.core.private import private_dir
from app.core.resources import Timestamp
from app.models import api_key as key_model
from app.models import schedule as schedule_model

# A key's name and owner: one rule, for the API and the CLI alike (a key's rate limit has its
# own in config/base.py, shared with the settings). fullmatch: `$` would also match before a
# final newline (`alice\n`).
NAME_CHARACTERS = r"[A-Za-z0-9._@-]"
NAME = re.compile(rf"{NAME_CHARACTERS}{{1,100}}")
NAME_RULE = "1 to 100 letters, digits and . _ @ - only"


def name_error(value: str) -> str | None:
    """Why `value` is not a key name or owner, or None."""
    return None if NAME.fullmatch(value) else f"Use {NAME_RULE}."


logger = logging.getLogger(__name__)

KEY_PREFIX = "tsk_"
_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
_BODY_LENGTH = 32
_CHECKSUM_LENGTH = 6
KEY_LENGTH = len(KEY_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
REFUSED_ENTRIES = 10_000


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def new_key() -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_BODY_LENGTH))
    return KEY_PREFIX + body + _base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH)


def well_formed(key: str) -> bool:
    """The prefix, the length, the alphabet and the checksum are right (not that the key exists)."""
    if len(key) != KEY_LENGTH or not key.startswith(KEY_PREFIX):
        return False
    body, checksum = key[len(KEY_PREFIX) : -_CHECKSUM_LENGTH], key[-_CHECKSUM_LENGTH:]
    if not all(char in _ALPHABET for char in body):
        return False
    return hmac.compare_digest(_base62(zlib.crc32(body.encode()), _CHECKSUM_LENGTH), checksum)


class KeyNotFound(NotFound):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the owner whose rows they see, and whether they see everyone's."""

    owner: str
    admin: bool = False
    key_id: uuid.UUID | None = None
    rate_limit: str | None = None

    @property
    def scope(self) -> str | None:
        """The owner to filter reads by: None (every owner) for an admin."""
        return None if self.admin else self.owner


class ApiKey(Schema):
    """The key resource (never the key itself, which only the create response shows)."""

    id = fields.UUID(required=True)
    name = fields.String(required=True)
    owner = fields.String(required=True)
    admin = fields.Boolean(required=True)
    hint = fields.String(required=True, metadata={"description": "The key's first characters"})
    rate_limit = fields.String(allow_none=True, metadata={"description": "null: the deployment's limits"})
    created_at = Timestamp(required=True)
    last_used_at = Timestamp(allow_none=True, metadata={"description": "To the minute"})
    revoked_at = Timestamp(allow_none=True)


class RevokedKey(ApiKey):
    """A revoked key, and what its revocation paused."""

    schedules_paused = fields.Integer(
        required=True,
        metadata={"description": "The owner's schedules paused because this was its last key"},
    )


_KEY = ApiKey()


class KeyManager:
    """Creates, lists and revokes keys, and turns a presented key into a Principal.

    A verified key is remembered in this process for `cache_seconds`, so a revoked key stops
    working everywhere within that time (at once in the process that revoked it). `last_used_at`
    is written at most once per `touch_seconds` per key and process, never once per request.
    """

    def __init__(
        self, db: DatabaseManager, secret: str, cache_seconds: float = 5.0, touch_seconds: float = 60.0
    ):
        self.db = db
        self.secret_key = secret  # SECRET_KEY, or the one made in DATA_DIR (the wiring chose it)
        self._secret = secret.encode()
        self.cache_seconds = cache_seconds
        self.touch_seconds = touch_seconds
        self._verified: dict[str, tuple[float, Principal]] = {}
        # Keys refused lately (a client retrying with a revoked or mistyped key): no lookup each time.
        self._refused: dict[str, float] = {}
        self._touched: dict[uuid.UUID, float] = {}
        self._sessions: dict[str, tuple[float, bool]] = {}  # session id -> (until, valid)
        self._lock = threading.Lock()

    # -- dashboard sessions (a signed cookie holding a key's digest, a session id and its start)

    def start_session(self, session: Any, key: str) -> None:
        session.clear()
        session.permanent = True  # the cookie expires with the session's lifetime
        session["key"] = self.digest(key)
        session["sid"] = secrets.token_urlsafe(24)
        session["issued"] = int(time.time())
        session["csrf"] = secrets.token_urlsafe(32)

    def end_session(self, session: Any, lifetime: timedelta) -> None:
        """Sign-out: the session id is refused from now on, wherever the cookie is replayed."""
        sid = session.get("sid")
        if sid:
            expires = datetime.fromtimestamp(int(session.get("issued", 0)), UTC) + lifetime
            self.db.run(lambda c: key_model.revoke_session(c, sid, expires))
            with self._lock:
                self._sessions[sid] = (math.inf, False)
        session.clear()

    def session_valid(self, session: Any, lifetime: timedelta) -> bool:
        """Not past its lifetime, and not signed out (a sign-out elsewhere counts within
        `cache_seconds`)."""
        sid, issued = session.get("sid"), session.get("issued")
        if not sid or not isinstance(issued, int) or time.time() - issued > lifetime.total_seconds():
            return False
        now = time.monotonic()
        with self._lock:
            cached = self._sessions.get(sid)
        if cached is not None and cached[0] > now:
            return cached[1]
        valid = not self.db.run(lambda c: key_model.session_revoked(c, sid))
        with self._lock:
            self._sessions[sid] = (math.inf if not valid else now + self.cache_seconds, valid)
            if len(self._sessions) > 10_000:
                self._sessions.clear()
        return valid

    def digest(self, key: str) -> str:
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def create(
        self, name: str, owner: str | None = None, admin: bool = False, rate_limit: str | None = None
    ) -> tuple[dict[str, Any], str]:
        """A new key: its resource and the key itself, which is not stored and cannot be shown again."""
        key, key_id = new_key(), uuid.uuid4()
        values = {
            "name": name,
            "owner": owner or name,
            "key_hash": self.digest(key),
            "hint": key[: len(KEY_PREFIX) + 4],
            "admin": admin,
            "rate_limit": rate_limit,
        }
        self.db.run(lambda c: key_model.insert(c, key_id, **values))
        return self.get(key_id), key

    def get(self, key_id: uuid.UUID) -> dict[str, Any]:
        row = self.db.run(lambda c: key_model.get(c, key_id))
        if row is None:
            raise KeyNotFound("API key not found", {"id": str(key_id)})
        return _KEY.dump(row)

    def list(self, include_revoked: bool = False) -> list[dict[str, Any]]:
        return [_KEY.dump(row) for row in self.db.run(lambda c: key_model.list_all(c, include_revoked))]

    def set_rate_limit(self, key_id: uuid.UUID, rate_limit: str | None) -> dict[str, Any]:
        if not self.db.run(lambda c: key_model.update(c, key_id, rate_limit=rate_limit)):
            raise KeyNotFound("API key not found (or revoked)", {"id": str(key_id)})
        self._forget(key_id)
        return self.get(key_id)

    def revoke(self, key_id: uuid.UUID) -> dict[str, Any]:
        """Revoke a key; revoking an owner's last key also pauses the owner's schedules (nobody
        could see or stop what they start), in the same transaction."""

        def revoke(conn: Any) -> int | None:
            if not key_model.revoke(conn, key_id):
                return None
            owner = key_model.get(conn, key_id).owner
            return schedule_model.pause_owner(conn, owner) if not key_model.active_for(conn, owner) else 0

        paused = self.db.run(revoke)
        if paused is None:
            raise KeyNotFound("API key not found (or revoked already)", {"id": str(key_id)})
        self._forget(key_id)
        if paused:
            logger.warning("key %s was its owner's last: %s of the owner's schedules paused", key_id, paused)
        return self.get(key_id) | {"schedules_paused": paused}

    def authenticate(self, key: str, before_lookup: Callable[[], None] | None = None) -> Principal | None:
        """The caller a key stands for; None for a malformed, unknown or revoked key."""
        if not well_formed(key):
            return None
        return self.authenticate_digest(self.digest(key), before_lookup)

    def authenticate_digest(
        self, digest: str, before_lookup: Callable[[], None] | None = None
    ) -> Principal | None:
        """The caller of a key known by its digest (a dashboard session keeps the digest, never
        the key); None if no key has it or it is revoked. `before_lookup` runs only when the
        database must be asked (a key this process has not seen lately), and may refuse."""
        now = time.monotonic()
        with self._lock:
            cached = self._verified.get(digest)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            if self._refused.get(digest, 0.0) > now:
                return None
            if before_lookup is not None:
                before_lookup()
            row = self.db.run(lambda c: key_model.by_hash(c, digest))
            if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
                with self._lock:
                    if len(self._refused) >= REFUSED_ENTRIES:
                        self._refused.clear()  # bounded: a flood of random keys only costs lookups
                    self._refused[digest] = now + self.cache_seconds
                return None
            principal = Principal(row.owner, row.admin, row.id, row.rate_limit)
            with self._lock:
                self._verified[digest] = (now + self.cache_seconds, principal)
        self._touch(principal.key_id, now)
        return principal

    def _touch(self, key_id: uuid.UUID | None, now: float) -> None:
        with self._lock:
            if key_id is None or now - self._touched.get(key_id, -self.touch_seconds) < self.touch_seconds:
                return
            self._touched[key_id] = now
        used = {key_id: datetime.now(UTC)}
        try:
            self.db.run(lambda c: key_model.touch(c, used))
        except DatabaseUnavailable:
            pass  # a missed last_used_at is not worth failing the request for

    def _forget(self, key_id: uuid.UUID) -> None:
        with self._lock:
            for digest, (_, principal) in list(self._verified.items()):
                if principal.key_id == key_id:
                    del self._verified[digest]


def local_secret(data_dir: str) -> str:
    """SECRET_KEY for development and testing when none is set: made once, kept in DATA_DIR (0600).

    Production requires SECRET_KEY (config refuses to start without it in keys mode): every API
    host must hash keys with the same secret, which a file on one host cannot promise.
    """
    folder = private_dir(Path(data_dir))
    path = folder / "secret_key"
    if not path.exists():
        # Written whole under another name, then linked: a process starting at the same moment
        # sees either no file or the whole secret, and the first link wins.
        draft = folder / f".secret_key.{os.getpid()}"
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
