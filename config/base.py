"""Settings read from the environment, each with a default, checked at start-up."""

from __future__ import annotations

import ipaddress
import math
import re
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


# A rate limit in Flask-Limiter's notation: one rule for the settings, the API and the CLI. The
# limiter parses it too; fullmatch, since `$` would also match before a final newline.
_RATE = r"[1-9][0-9]{0,8}/(second|minute|hour|day)"
RATE_LIMIT = re.compile(rf"{_RATE}(;{_RATE}){{0,9}}")
RATE_LIMIT_RULE = "must look like 100/second or 20/second;600/minute"


def rate_limit_error(value: str) -> str | None:
    """Why `value` is not a rate limit, or None."""
    from limits import parse_many

    if len(value) > 200 or not RATE_LIMIT.fullmatch(value):
        return f"Not a rate limit: {RATE_LIMIT_RULE}."
    try:
        parse_many(value)
    except ValueError:
        return f"Not a rate limit: {RATE_LIMIT_RULE}."
    return None


def read_rate(env: Mapping[str, str], name: str, default: str) -> str:
    """Rate limits, e.g. `20/second;600/minute`."""
    value = env.get(name, "").strip() or default
    if rate_limit_error(value):
        raise ConfigError(f"{name} {RATE_LIMIT_RULE}, got {value!r}")
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
    """An environment (APP_ENV): its name and flags; the settings' defaults that depend on it are
    declared with the settings (config/settings.py)."""

    NAME = "base"
    DEBUG = False
    TESTING = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> dict[str, Any]:
        """Return the Flask config mapping for this environment.

        With no DATABASE_URL, REDIS_URL or CELERY_BROKER_URL, Tasker runs embedded:
        SQLite and Celery's filesystem transport under TASKER_DATA_DIR, and an
        in-process cache. Any URL that is set wins.
        """
        from config.settings import DECLARED, Context

        context = Context(cls.NAME)
        config: dict[str, Any] = {"APP_ENV": cls.NAME, "DEBUG": cls.DEBUG, "TESTING": cls.TESTING}
        for setting in DECLARED:
            value = context.values[setting.name] = setting.read(env, context)
            config[setting.key or setting.name] = value
        if not config["SECRET_KEY"] and config["AUTH_MODE"] == "keys" and cls.NAME == "production":
            raise ConfigError(
                "SECRET_KEY is required with AUTH_MODE=keys in production: API keys are stored as "
                "HMAC-SHA256(SECRET_KEY, key). Make one with `openssl rand -hex 32`."
            )
        return config | {
            "BROKER_KIND": BROKER_KINDS[urlsplit(config["CELERY_BROKER_URL"]).scheme.lower()],
            "AUTH_MODE_EXPLICIT": bool(env.get("AUTH_MODE", "").strip()),
            # The dashboard's session cookie (keys mode): HttpOnly and SameSite=Strict always;
            # Secure as SESSION_COOKIE_SECURE says.
            "SESSION_COOKIE_NAME": "tasker_session",
            "SESSION_COOKIE_HTTPONLY": True,
            "SESSION_COOKIE_SAMESITE": "Strict",
        }
