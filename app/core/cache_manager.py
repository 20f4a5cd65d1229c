"""Read cache for finished task outputs. A failing cache costs latency, never an error."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import redis

logger = logging.getLogger(__name__)


class MemoryStore:
    """The in-process cache of the embedded default: the few Redis calls CacheManager makes."""

    def __init__(self, max_entries: int = 10_000):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic():
                self._entries.pop(key, None)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def set(self, key: str, value: str, ex: int) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + ex, value.encode())
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def ping(self) -> bool:
        return True


# A process also keeps the small outputs it has read from Redis (at most NEAR_ENTRIES of at most
# NEAR_MAX_BYTES each, so at most 8 MB): only terminal outputs are cached, and a terminal output
# never changes, so a repeated read of a finished task needs no round trip at all.
NEAR_ENTRIES = 2048
NEAR_MAX_BYTES = 4096


class CacheManager:
    """Caches terminal task outputs under `tasker:output:<id>`, in Redis or in process."""

    def __init__(
        self, client: redis.Redis | MemoryStore, ttl_seconds: int = 3600, pause_seconds: float = 5.0
    ):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.pause_seconds = pause_seconds
        self._paused_until = 0.0
        self._near = MemoryStore(NEAR_ENTRIES) if self.is_redis else None

    @classmethod
    def from_url(cls, url: str | None, ttl_seconds: int = 3600) -> CacheManager:
        """Redis at `url`, or an in-process cache when there is no URL."""
        if not url:
            return cls(MemoryStore(), ttl_seconds)
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            health_check_interval=30,
        )
        return cls(client, ttl_seconds)

    @property
    def is_redis(self) -> bool:
        return not isinstance(self.client, MemoryStore)

    @staticmethod
    def key(task_id: object, owner: str) -> str:
        # The owner is part of the key: another owner's id is a miss, then not found in the database.
        return f"tasker:output:{owner}:{task_id}"

    def get_output(self, task_id: object, owner: str) -> dict[str, Any] | None:
        """`owner`'s cached output, or None on a miss or when the cache is unreachable."""
        key = self.key(task_id, owner)
        raw = self._near.get(key) if self._near is not None else None
        if raw is not None:
            return json.loads(raw)
        if self._paused():
            return None
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            self._pause(exc)
            return None
        if raw is None:
            return None
        self._remember(key, raw)
        return json.loads(raw)

    def set_output(
        self,
        task_id: object,
        owner: str,
        output: dict[str, Any],
        publish: tuple[str, str] | None = None,
    ) -> None:
        """Cache a terminal output; `publish` (channel, message) goes out in the same round trip."""
        if self._paused():
            return
        key = self.key(task_id, owner)
        try:
            if publish is None or not self.is_redis:
                self.client.set(key, json.dumps(output), ex=self.ttl_seconds)
                return
            pipe = self.client.pipeline(transaction=False)
            pipe.set(key, json.dumps(output), ex=self.ttl_seconds)
            pipe.publish(*publish)
            pipe.execute()
        except redis.RedisError as exc:
            self._pause(exc)

    def _remember(self, key: str, value: str | bytes) -> None:
        if self._near is not None and len(value) <= NEAR_MAX_BYTES:
            text = value.decode() if isinstance(value, bytes) else value
            self._near.set(key, text, ex=self.ttl_seconds)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def _paused(self) -> bool:
        return self._paused_until > time.monotonic()

    def _pause(self, exc: Exception) -> None:
        # Skip the cache for a few seconds so an outage does not add a timeout to every request.
        logger.warning(
            "cache unavailable, reading from the database for %.0fs: %s",
            self.pause_seconds,
            exc,
        )
        self._paused_until = time.monotonic() + self.pause_seconds
