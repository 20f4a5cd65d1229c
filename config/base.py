"""Settings read from the environment, each with a default, checked at start-up."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting has a value Tasker cannot run with; the message names it."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def read_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def read_float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} must be between {low} and {high}, got {raw}")
    return value


def hide_password(url: str) -> str:
    """The URL with its password as ***, by SQLAlchemy's URL parser (which reads any scheme://)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url if "@" not in url else "<a URL that could not be read>"


def read_url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str | None:
    """A URL whose scheme (with its +driver, if any) is one of `schemes`."""
    value = env.get(name, "").strip() or default
    if value is None:
        return None
    if urlsplit(value).scheme.lower() not in schemes:
        allowed = ", ".join(f"{s}://" for s in schemes)
        raise ConfigError(f"{name} must start with one of {allowed} got {hide_password(value)!r}")
    return value


# Celery's broker URL schemes, and the kind of broker each one is: decided here, once.
BROKER_KINDS = {
    "redis": "redis",
    "rediss": "redis",
    "amqp": "amqp",
    "pyamqp": "amqp",
    "filesystem": "filesystem",
}
# The drivers Tasker runs with: psycopg2 (the default for postgresql://) and the standard sqlite3.
DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg2", "sqlite", "sqlite+pysqlite")


def read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


def read_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name, "").strip() or default).upper()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


class BaseConfig:
    """Defaults shared by every environment; subclasses change a few."""

    NAME = "base"
    DEBUG = False
    TESTING = False
    DEFAULT_LOG_LEVEL = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """Return the Flask config mapping for this environment.

        With no DATABASE_URL, REDIS_URL or CELERY_BROKER_URL, Tasker runs embedded:
        SQLite and Celery's filesystem transport under TASKER_DATA_DIR, and an
        in-process cache. Any URL that is set wins.
        """
        data_dir = Path(env.get("TASKER_DATA_DIR", "").strip() or PROJECT_ROOT / "instance").resolve()
        redis_url = read_url(env, "REDIS_URL", None, ("redis", "rediss", "unix"))
        broker_url = read_url(env, "CELERY_BROKER_URL", redis_url or "filesystem://", tuple(BROKER_KINDS))
        assert broker_url is not None
        return {
            "APP_ENV": cls.NAME,
            "DEBUG": cls.DEBUG,
            "TESTING": cls.TESTING,
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": read_url(
                env, "DATABASE_URL", f"sqlite:///{data_dir / 'tasker.db'}", DATABASE_SCHEMES
            ),
            "DATABASE_POOL_SIZE": read_int(env, "DATABASE_POOL_SIZE", 10, 1, 200),
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": broker_url,
            "BROKER_KIND": BROKER_KINDS[urlsplit(broker_url).scheme.lower()],
            "OPENAI_API_KEY": env.get("OPENAI_API_KEY", "").strip(),
            "OPENAI_BASE_URL": read_url(
                env, "OPENAI_BASE_URL", "https://api.openai.com/v1", ("http", "https")
            ).rstrip("/"),
            "OPENAI_MODEL": env.get("OPENAI_MODEL", "").strip() or "gpt-4o-mini",
            "OPENAI_CONNECT_TIMEOUT_SECONDS": read_float(env, "OPENAI_CONNECT_TIMEOUT_SECONDS", 5.0, 0.1, 60),
            "OPENAI_READ_TIMEOUT_SECONDS": read_float(env, "OPENAI_READ_TIMEOUT_SECONDS", 60.0, 0.1, 100),
            "OPENWEATHER_API_KEY": env.get("OPENWEATHER_API_KEY", "").strip(),
            "OPENWEATHER_BASE_URL": read_url(
                env, "OPENWEATHER_BASE_URL", "https://api.openweathermap.org/data/2.5", ("http", "https")
            ).rstrip("/"),
            "OPENWEATHER_CONNECT_TIMEOUT_SECONDS": read_float(
                env, "OPENWEATHER_CONNECT_TIMEOUT_SECONDS", 5.0, 0.1, 60
            ),
            "OPENWEATHER_READ_TIMEOUT_SECONDS": read_float(
                env, "OPENWEATHER_READ_TIMEOUT_SECONDS", 10.0, 0.1, 50
            ),
            "RETRY_BACKOFF_SECONDS": read_float(env, "RETRY_BACKOFF_SECONDS", 1.0, 0.0, 60),
            "CACHE_TTL_SECONDS": read_int(env, "CACHE_TTL_SECONDS", 3600, 1, 30 * 86400),
            "MAX_CONTENT_LENGTH": read_int(env, "MAX_CONTENT_LENGTH", 1024 * 1024, 1024, 64 * 1024 * 1024),
            "TASK_MAX_DELIVERIES": read_int(env, "TASK_MAX_DELIVERIES", 3, 1, 100),
            "RECOVERY_INTERVAL_SECONDS": read_int(env, "RECOVERY_INTERVAL_SECONDS", 30, 1, 86400),
            "SCHEDULER_INTERVAL_SECONDS": read_float(env, "SCHEDULER_INTERVAL_SECONDS", 1.0, 0.1, 60),
            "RECOVERY_PENDING_SECONDS": read_int(env, "RECOVERY_PENDING_SECONDS", 300, 1, 7 * 86400),
            "RECOVERY_STARTED_SECONDS": read_int(env, "RECOVERY_STARTED_SECONDS", 15, 1, 86400),
            "BROKER_VISIBILITY_TIMEOUT_SECONDS": read_int(
                env, "BROKER_VISIBILITY_TIMEOUT_SECONDS", 7200, 60, 7 * 86400
            ),
            "CELERY_TASK_EVENTS": read_bool(env, "CELERY_TASK_EVENTS", True),
            "CELERY_TASK_SENT_EVENT": read_bool(env, "CELERY_TASK_SENT_EVENT", False),
            "LOG_LEVEL": read_choice(env, "LOG_LEVEL", cls.DEFAULT_LOG_LEVEL, LOG_LEVELS),
            "LOG_FILE": env.get("LOG_FILE", "").strip() or None,
        }
