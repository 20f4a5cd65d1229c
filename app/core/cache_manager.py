"""Read cache for finished task outputs. A failing cache costs latency, never an error."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis

logger = logging.getLogger(__name__)


class CacheManager:
    """Caches terminal task outputs in Redis under `tasker:output:<id>`."""

    def __init__(self, client: redis.Redis, ttl_seconds: int = 3600, pause_seconds: float = 5.0):
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.pause_seconds = pause_seconds
        self._paused_until = 0.0

    @classmethod
    def from_url(cls, url: str, ttl_seconds: int = 3600) -> CacheManager:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            health_check_interval=30,
        )
        return cls(client, ttl_seconds)

    @staticmethod
    def key(task_id: object) -> str:
        return f"tasker:output:{task_id}"

    def get_output(self, task_id: object) -> dict[str, Any] | None:
        """The cached output, or None on a miss or when the cache is unreachable."""
        if self._paused():
            return None
        try:
            raw = self.client.get(self.key(task_id))
        except redis.RedisError as exc:
            self._pause(exc)
            return None
        return json.loads(raw) if raw is not None else None

    def set_output(self, task_id: object, output: dict[str, Any]) -> None:
        if self._paused():
            return
        try:
            self.client.set(self.key(task_id), json.dumps(output), ex=self.ttl_seconds)
        except redis.RedisError as exc:
            self._pause(exc)

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
