"""Settings read from the environment, each with a default, checked at start-up."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting has a value Tasker cannot run with; the message names it."""


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_RETRIES = 10  # the most retries a task may be given (MAX_RETRY_ATTEMPTS, a retry_policy)


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


LOOPBACK_NAMES = ["localhost", "127.0.0.1"]


def read_list(env: Mapping[str, str], name: str) -> list[str]:
    """A comma-separated list; empty when unset."""
    return [item.strip() for item in env.get(name, "").split(",") if item.strip()]


def read_rate(env: Mapping[str, str], name: str, default: str) -> str:
    """Rate limits in Flask-Limiter's notation, e.g. `20/second;600/minute`."""
    from limits import parse_many

    value = env.get(name, "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must look like 20/second;600/minute, got {value!r}") from None
    return value


DEFAULT_WEBHOOK_RETRY_DELAYS = "5,30,120,600,1800,7200,21600,43200,86400"


def read_networks(env: Mapping[str, str], name: str, default: str) -> list[ipaddress._BaseNetwork]:
    """Addresses or networks (CIDR), comma-separated."""
    raw = env.get(name, "").strip() or default
    try:
        return [ipaddress.ip_network(item.strip(), strict=False) for item in raw.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(
            f"{name} must be addresses or networks, e.g. 127.0.0.1,10.0.0.0/8; got {raw!r}"
        ) from None


def read_delays(env: Mapping[str, str], name: str, default: str) -> list[float]:
    """Seconds between attempts, comma-separated: each from 0.1 s to a day."""
    raw = env.get(name, "").strip() or default
    try:
        delays = [float(item) for item in raw.split(",") if item.strip()]
    except ValueError:
        raise ConfigError(f"{name} must be seconds separated by commas, e.g. 5,30,120; got {raw!r}") from None
    if not delays or any(not 0.1 <= delay <= 86400 for delay in delays):
        raise ConfigError(f"{name} must list 1 or more delays, each from 0.1 to 86400 seconds; got {raw!r}")
    return delays


def read_webhook_secrets(env: Mapping[str, str]) -> list[str]:
    """WEBHOOK_SECRET: one `whsec_` secret, or two (the new one first) while receivers move over."""
    import base64
    import binascii

    secrets = [item for item in env.get("WEBHOOK_SECRET", "").replace(",", " ").split() if item]
    for secret in secrets:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if not secret.startswith("whsec_") or not 24 <= len(key) <= 64:
            raise ConfigError(
                "WEBHOOK_SECRET must be whsec_ and 24 to 64 random bytes in base64 (two may be given, "
                "separated by a space, while receivers move to the new one); make one with: python -c "
                "\"import base64,os; print('whsec_' + base64.b64encode(os.urandom(32)).decode())\""
            )
    if len(secrets) > 2:
        raise ConfigError("WEBHOOK_SECRET holds at most two secrets (the new one first)")
    return secrets


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: Mapping[str, Any], hosts: list[str]) -> str | None:
    """Refuse open mode on a non-loopback address unless AUTH_MODE=open was asked for; a warning if so."""
    if config["AUTH_MODE"] != "open":
        return None
    exposed = [host for host in hosts if not is_loopback(host)]
    if not exposed:
        return None
    if not config["AUTH_MODE_EXPLICIT"]:
        raise ConfigError(
            f"open mode (no API keys) on {', '.join(exposed)} would let anyone on the network read and "
            "run tasks: bind to 127.0.0.1, use AUTH_MODE=keys, or set AUTH_MODE=open to mean it"
        )
    return (
        f"WARNING: AUTH_MODE=open on {', '.join(exposed)}: anyone who reaches this port can read, "
        "run and cancel every task. Use AUTH_MODE=keys on a network."
    )


class BaseConfig:
    """Defaults shared by every environment; subclasses change a few."""

    NAME = "base"
    DEBUG = False
    TESTING = False
    DEFAULT_LOG_LEVEL = "INFO"
    DEFAULT_AUTH_MODE = "open"
    DEFAULT_LOG_FORMAT = "text"
    RATE_LIMITS_BY_DEFAULT = True

    @classmethod
    def observability(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """Logs and metrics (README: Operating Tasker)."""
        return {
            "LOG_LEVEL": read_choice(env, "LOG_LEVEL", cls.DEFAULT_LOG_LEVEL, LOG_LEVELS),
            "LOG_FILE": env.get("LOG_FILE", "").strip() or None,
            "LOG_FORMAT": read_choice(env, "LOG_FORMAT", cls.DEFAULT_LOG_FORMAT, ("TEXT", "JSON")).lower(),
            "ACCESS_LOG": read_bool(env, "ACCESS_LOG", True),
            "METRICS_ENABLED": read_bool(env, "METRICS_ENABLED", True),
            "METRICS_TOKEN": env.get("METRICS_TOKEN", "").strip() or None,
            "METRICS_SCRAPE_TIMEOUT_SECONDS": read_float(env, "METRICS_SCRAPE_TIMEOUT_SECONDS", 2.0, 0.1, 30),
            "WORKER_HEARTBEAT_SECONDS": read_float(env, "WORKER_HEARTBEAT_SECONDS", 10.0, 0.1, 3600),
            "WORKER_METRICS_PORT": read_int(env, "WORKER_METRICS_PORT", 0, 0, 65535),
        }

    @classmethod
    def webhooks(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """Completion webhooks (README: Webhooks)."""
        return {
            "WEBHOOK_SECRET": read_webhook_secrets(env),
            "WEBHOOK_ALLOW_HTTP": read_bool(env, "WEBHOOK_ALLOW_HTTP", False),
            "WEBHOOK_ALLOWED_HOSTS": [
                host.lower().rstrip(".") for host in read_list(env, "WEBHOOK_ALLOWED_HOSTS")
            ],
            "WEBHOOK_RETRY_DELAYS": read_delays(env, "WEBHOOK_RETRY_DELAYS", DEFAULT_WEBHOOK_RETRY_DELAYS),
            "WEBHOOK_CONNECT_TIMEOUT_SECONDS": read_float(
                env, "WEBHOOK_CONNECT_TIMEOUT_SECONDS", 3.0, 0.1, 30
            ),
            "WEBHOOK_TIMEOUT_SECONDS": read_float(env, "WEBHOOK_TIMEOUT_SECONDS", 10.0, 0.5, 60),
            "WEBHOOK_SECRET_OVERLAP_HOURS": read_float(env, "WEBHOOK_SECRET_OVERLAP_HOURS", 24.0, 0, 24 * 30),
            # Threads of a worker that consumes the `webhooks` queue alone (-Q webhooks --pool threads).
            "WEBHOOK_WORKER_THREADS": read_int(env, "WEBHOOK_WORKER_THREADS", 8, 1, 256),
        }

    @classmethod
    def security(cls, env: Mapping[str, str], data_dir: Path) -> dict[str, Any]:
        """Keys, owners, limits, quotas, retention and what a browser may do (README: Security)."""
        mode = (env.get("AUTH_MODE", "").strip() or cls.DEFAULT_AUTH_MODE).lower()
        if mode not in ("keys", "open"):
            raise ConfigError(f"AUTH_MODE must be keys or open, got {mode!r}")
        secret = env.get("SECRET_KEY", "").strip()
        if secret and len(secret) < 32:
            raise ConfigError("SECRET_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)")
        if not secret and mode == "keys" and cls.NAME == "production":
            raise ConfigError(
                "SECRET_KEY is required with AUTH_MODE=keys in production: API keys are stored as "
                "HMAC-SHA256(SECRET_KEY, key). Make one with `openssl rand -hex 32`."
            )
        default_model = env.get("OPENAI_MODEL", "").strip() or "gpt-4o-mini"
        keys = mode == "keys"
        return {
            "AUTH_MODE": mode,
            "AUTH_MODE_EXPLICIT": bool(env.get("AUTH_MODE", "").strip()),
            "SECRET_KEY": secret or None,  # None: made once in DATA_DIR (development and testing only)
            "TRUSTED_HOSTS": read_list(env, "TRUSTED_HOSTS") or (LOOPBACK_NAMES if mode == "open" else None),
            "CORS_ORIGINS": read_list(env, "CORS_ORIGINS"),
            # The dashboard's session cookie (keys mode): HttpOnly and SameSite=Strict always;
            # Secure (sent over HTTPS only, and to http://localhost) by default in production.
            "SESSION_COOKIE_NAME": "tasker_session",
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Strict",
            "SESSION_COOKIE_SECURE": read_bool(env, "SESSION_COOKIE_SECURE", cls.NAME == "production"),
            # A sign-in lasts this long at most, whatever the browser keeps (checked on the server).
            "PERMANENT_SESSION_LIFETIME": timedelta(
                hours=read_float(env, "SESSION_LIFETIME_HOURS", 12.0, 0.1, 720)
            ),
            "RATE_LIMIT_ENABLED": read_bool(env, "RATE_LIMIT_ENABLED", cls.RATE_LIMITS_BY_DEFAULT),
            "RATE_LIMIT_SUBMIT": read_rate(env, "RATE_LIMIT_SUBMIT", "20/second;600/minute"),
            "RATE_LIMIT_READ": read_rate(env, "RATE_LIMIT_READ", "100/second;3000/minute"),
            # Refused API keys per client address; past it a key is not even looked up (429).
            "RATE_LIMIT_INVALID_KEYS": read_rate(env, "RATE_LIMIT_INVALID_KEYS", "20/minute"),
            # Quotas share a deployment between owners; open mode has one owner, so none by default.
            "QUOTA_UNFINISHED_TASKS": read_int(
                env, "QUOTA_UNFINISHED_TASKS", 10_000 if keys else 0, 0, 10**9
            ),
            "QUOTA_SCHEDULES": read_int(env, "QUOTA_SCHEDULES", 100 if keys else 0, 0, 10**6),
            "SCHEDULE_MIN_INTERVAL_SECONDS": read_int(env, "SCHEDULE_MIN_INTERVAL_SECONDS", 60, 60, 86400),
            "OPENAI_ALLOWED_MODELS": read_list(env, "OPENAI_ALLOWED_MODELS") or [default_model],
            "OPENAI_MAX_TOKENS": read_int(env, "OPENAI_MAX_TOKENS", 1024, 1, 32_768),
            "TASK_RETENTION_DAYS": read_int(env, "TASK_RETENTION_DAYS", 30, 0, 36_500),
            "RETENTION_INTERVAL_SECONDS": read_int(env, "RETENTION_INTERVAL_SECONDS", 3600, 1, 86400),
            "WAIT_MAX_CONCURRENT": read_int(env, "WAIT_MAX_CONCURRENT", 4, 0, 1000),
            "STREAM_MAX_CONCURRENT": read_int(env, "STREAM_MAX_CONCURRENT", 100, 0, 10_000),
            "STREAM_HEARTBEAT_SECONDS": read_float(env, "STREAM_HEARTBEAT_SECONDS", 15.0, 1, 300),
            # Keys mode: open streams one owner may hold in one API process (admins included).
            "STREAM_MAX_PER_OWNER": read_int(env, "STREAM_MAX_PER_OWNER", 10, 1, 10_000),
            # What may wait for a stream whose client reads too slowly before it is closed.
            "STREAM_BACKLOG_KB": read_int(env, "STREAM_BACKLOG_KB", 1024, 64, 1024 * 1024),
            "STREAM_SEND_TIMEOUT_SECONDS": read_float(env, "STREAM_SEND_TIMEOUT_SECONDS", 30.0, 1, 600),
            "PROXY_HOPS": read_int(env, "PROXY_HOPS", 0, 0, 5),
            # The proxies whose X-Forwarded-For is believed (addresses or networks): a request from
            # anywhere else is taken at its own address, whatever it claims.
            "TRUSTED_PROXIES": read_networks(env, "TRUSTED_PROXIES", "127.0.0.0/8,::1"),
        }

    @staticmethod
    def upstreams(env: Mapping[str, str]) -> dict[str, Any]:
        """The external APIs the built-in task types call."""
        return {
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
        }

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
            # Submits written together at most (one INSERT, one publish: app/core/batching.py); 1: off.
            "SUBMIT_BATCH_MAX": read_int(env, "SUBMIT_BATCH_MAX", 64, 1, 1000),
            "REDIS_URL": redis_url,
            "CELERY_BROKER_URL": broker_url,
            "BROKER_KIND": BROKER_KINDS[urlsplit(broker_url).scheme.lower()],
            "RETRY_BACKOFF_SECONDS": read_float(env, "RETRY_BACKOFF_SECONDS", 1.0, 0.0, 60),
            # The hard time limit of the task types without one of their own (app/tasks/registry.py).
            "DEFAULT_TASK_TIMEOUT": read_int(env, "DEFAULT_TASK_TIMEOUT", 45, 2, 86400),
            # Retries of the task types that retry (upstream calls), and of a retry_policy without
            # max_retries.
            "MAX_RETRY_ATTEMPTS": read_int(env, "MAX_RETRY_ATTEMPTS", 3, 0, MAX_RETRIES),
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
            # Processes (prefork) per worker started without --concurrency; 0: one per CPU core.
            "WORKER_CONCURRENCY": read_int(env, "WORKER_CONCURRENCY", 0, 0, 256),
            "CELERY_TASK_EVENTS": read_bool(env, "CELERY_TASK_EVENTS", True),
            "CELERY_TASK_SENT_EVENT": read_bool(env, "CELERY_TASK_SENT_EVENT", False),
            **cls.upstreams(env),
            **cls.security(env, data_dir),
            **cls.observability(env),
            **cls.webhooks(env),
        }
