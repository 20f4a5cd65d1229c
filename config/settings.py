"""Every setting, declared once: its name, group, reader (type and rule), default and one line of help.

`BaseConfig.from_env` reads them in this order (a default may depend on what came before, or on
the environment: APP_ENV); `python -m config.reference` writes tasker.env.example and the
settings reference (docs/settings.md) from them, and a test keeps both up to date.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from config.base import (
    BROKER_KINDS,
    DATABASE_SCHEMES,
    DEFAULT_WEBHOOK_RETRY_DELAYS,
    LOG_LEVELS,
    LOOPBACK_NAMES,
    MAX_RETRIES,
    PROJECT_ROOT,
    ConfigError,
    read_bool,
    read_choice,
    read_delays,
    read_float,
    read_int,
    read_list,
    read_networks,
    read_rate,
    read_url,
    read_webhook_secrets,
)


@dataclass(frozen=True)
class Reader:
    """How a setting's text becomes its value: `read(env, name, default)`, and its rule in words."""

    read: Callable[[Mapping[str, str], str, Any], Any]
    rule: str


def integer(low: int, high: int) -> Reader:
    return Reader(
        lambda env, name, default: read_int(env, name, default, low, high), f"integer, {low} to {high}"
    )


def number(low: float, high: float) -> Reader:
    return Reader(
        lambda env, name, default: read_float(env, name, default, low, high), f"number, {low:g} to {high:g}"
    )


def url(*schemes: str, strip_slash: bool = False) -> Reader:
    def read(env: Mapping[str, str], name: str, default: Any) -> Any:
        value = read_url(env, name, default, schemes)
        return value.rstrip("/") if strip_slash and value else value

    return Reader(read, "URL: " + ", ".join(f"{scheme}://" for scheme in schemes))


def _text(env: Mapping[str, str], name: str, default: Any) -> Any:
    return env.get(name, "").strip() or default


def _choice_lower(*choices: str) -> Reader:
    def read(env: Mapping[str, str], name: str, default: Any) -> str:
        value = (env.get(name, "").strip() or default).lower()
        if value not in choices:
            raise ConfigError(f"{name} must be {' or '.join(choices)}, got {value!r}")
        return value

    return Reader(read, " or ".join(choices))


BOOLEAN = Reader(read_bool, "true or false")
TEXT = Reader(_text, "text")
LIST = Reader(lambda env, name, default: read_list(env, name) or default, "comma-separated list")
RATE = Reader(read_rate, "rate limits, e.g. 20/second;600/minute")
NETWORKS = Reader(read_networks, "addresses or networks (CIDR), comma-separated")
DELAYS = Reader(read_delays, "seconds, comma-separated, each 0.1 to 86400")
HOSTS = Reader(
    lambda env, name, default: [h.lower().rstrip(".") for h in read_list(env, name)] or default,
    "host or host:port, comma-separated",
)
DIRECTORY = Reader(lambda env, name, default: str(Path(_text(env, name, default)).resolve()), "a directory")
WEBHOOK_SECRETS = Reader(
    lambda env, name, default: read_webhook_secrets(env), "whsec_ secrets, space-separated"
)


def _secret_key(env: Mapping[str, str], name: str, default: Any) -> str | None:
    secret = env.get(name, "").strip()
    if secret and len(secret) < 32:
        raise ConfigError("SECRET_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)")
    return secret or default


def choice(*choices: str) -> Reader:
    return Reader(lambda env, name, default: read_choice(env, name, default, choices), " or ".join(choices))


@dataclass(frozen=True)
class Context:
    """What a computed default may depend on: the environment's name, and the settings read so far."""

    env_name: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Setting:
    name: str
    group: str
    help: str
    reader: Reader
    default: Any = None  # a value, or a function of the Context
    shown: str | None = None  # the default as the reference shows it, when it is not a plain value
    key: str | None = None  # its key in the app's config, when not `name`
    secret: bool = False  # a secret or a connection: .env's, never tasker.env's
    tuning: bool = False  # capacity and timing, whose defaults suit most deployments
    convert: Callable[[Any], Any] | None = None  # what the app's config holds, from the value read

    def read(self, env: Mapping[str, str], context: Context) -> Any:
        default = self.default(context) if callable(self.default) else self.default
        value = self.reader.read(env, self.name, default)
        return self.convert(value) if self.convert else value


def _by_env(**defaults: Any) -> Callable[[Context], Any]:
    """A default that depends on APP_ENV (`other` for the rest)."""
    return lambda context: defaults.get(context.env_name, defaults.get("other"))


def _keys_mode(keys: Any, open_: Any) -> Callable[[Context], Any]:
    return lambda context: keys if context.values["AUTH_MODE"] == "keys" else open_


STORAGE, BROKER, UPSTREAMS, TASKS, RECOVERY, SECURITY, LIMITS, STREAMS, WEBHOOKS, LOGS, SERVING = (
    "Storage and cache", "Broker and workers", "External APIs", "Tasks", "Recovery and beat",
    "Security", "Limits and quotas", "Waits and event streams", "Webhooks", "Logs and metrics",
    "Serving",
)  # fmt: skip
_S = Setting
DECLARED: tuple[Setting, ...] = (
    _S(
        "TASKER_DATA_DIR",
        STORAGE,
        "where the embedded backends and beat's schedule keep their files",
        DIRECTORY,
        str(PROJECT_ROOT / "instance"),
        "`instance/` in the project (`/var/lib/tasker` in the image)",
        key="DATA_DIR",
    ),
    _S(
        "DATABASE_URL",
        STORAGE,
        "`postgresql://user:pass@host:5432/db` (`postgres://` and `postgresql+psycopg2://` "
        "work too) or `sqlite:///path`; other drivers are refused at start",
        url(*DATABASE_SCHEMES),
        lambda c: f"sqlite:///{Path(c.values['TASKER_DATA_DIR']) / 'tasker.db'}",
        "SQLite `$TASKER_DATA_DIR/tasker.db`",
        secret=True,
    ),
    _S(
        "DATABASE_POOL_SIZE",
        STORAGE,
        "connections per process, plus as many overflow; keep it at least `GUNICORN_THREADS`",
        integer(1, 200),
        10,
        tuning=True,
    ),
    _S(
        "REDIS_URL",
        STORAGE,
        "Redis for the cache, and the broker unless `CELERY_BROKER_URL` is set",
        url("redis", "rediss", "unix"),
        None,
        "unset: in-process cache",
        secret=True,
    ),
    _S(
        "CACHE_TTL_SECONDS",
        STORAGE,
        "how long finished outputs stay in the cache",
        integer(1, 30 * 86400),
        3600,
        tuning=True,
    ),
    _S(
        "CELERY_BROKER_URL",
        BROKER,
        "the Celery broker (`redis://`, `amqp://` or `filesystem://`)",
        url(*BROKER_KINDS),
        lambda c: c.values["REDIS_URL"] or "filesystem://",
        "`REDIS_URL`, else `filesystem://` under `$TASKER_DATA_DIR/broker`",
        secret=True,
    ),
    _S(
        "BROKER_VISIBILITY_TIMEOUT_SECONDS",
        BROKER,
        "Redis broker only: a message unacknowledged this long is handed to another worker; must exceed "
        "the longest hard time limit plus the longest retry delay (60 s), or Tasker refuses to start",
        integer(60, 7 * 86400),
        7200,
        tuning=True,
    ),
    _S(
        "WORKER_CONCURRENCY",
        BROKER,
        "prefork processes of a worker started without `--concurrency` (`make run`, "
        "compose's `worker`); 0: one per CPU core",
        integer(0, 256),
        0,
        tuning=True,
    ),
    _S(
        "CELERY_TASK_EVENTS",
        BROKER,
        "workers send Celery's task events (for Flower and `celery events`): three more broker messages "
        "per task, a sixth of a worker's throughput on short tasks; compose turns them on for its Flower",
        BOOLEAN,
        False,
    ),
    _S(
        "CELERY_TASK_SENT_EVENT",
        BROKER,
        "also a `task-sent` event per submit: one more broker message each, and "
        "the API leaves its one-LPUSH publish on Redis and its batched confirms on RabbitMQ",
        BOOLEAN,
        False,
    ),
    _S(
        "SUBMIT_BATCH_MAX",
        BROKER,
        "submits an API process writes together at most (one INSERT, one publish); 1 writes each on its own",
        integer(1, 1000),
        64,
        tuning=True,
    ),
    _S(
        "OPENAI_API_KEY",
        UPSTREAMS,
        "read by workers only; without it `query_chatgpt` fails saying so",
        TEXT,
        "",
        "empty",
        secret=True,
    ),
    _S(
        "OPENAI_BASE_URL",
        UPSTREAMS,
        "where `query_chatgpt` sends requests",
        url("http", "https", strip_slash=True),
        "https://api.openai.com/v1",
    ),
    _S("OPENAI_MODEL", UPSTREAMS, "the model used when a task names none", TEXT, "gpt-4o-mini"),
    _S(
        "OPENAI_CONNECT_TIMEOUT_SECONDS",
        UPSTREAMS,
        "connect timeout of each OpenAI call",
        number(0.1, 60),
        5.0,
        tuning=True,
    ),
    _S(
        "OPENAI_READ_TIMEOUT_SECONDS",
        UPSTREAMS,
        "read timeout of each OpenAI call",
        number(0.1, 100),
        60.0,
        tuning=True,
    ),
    _S(
        "OPENWEATHER_API_KEY",
        UPSTREAMS,
        "read by workers only; without it `weather` fails saying so",
        TEXT,
        "",
        "empty",
        secret=True,
    ),
    _S(
        "OPENWEATHER_BASE_URL",
        UPSTREAMS,
        "where `weather` sends requests",
        url("http", "https", strip_slash=True),
        "https://api.openweathermap.org/data/2.5",
    ),
    _S(
        "OPENWEATHER_CONNECT_TIMEOUT_SECONDS",
        UPSTREAMS,
        "connect timeout of each OpenWeather call",
        number(0.1, 60),
        5.0,
        tuning=True,
    ),
    _S(
        "OPENWEATHER_READ_TIMEOUT_SECONDS",
        UPSTREAMS,
        "read timeout of each OpenWeather call",
        number(0.1, 50),
        10.0,
        tuning=True,
    ),
    _S(
        "OPENAI_ALLOWED_MODELS",
        UPSTREAMS,
        "the models `query_chatgpt` may name (another is a 400 listing these)",
        LIST,
        lambda c: [c.values["OPENAI_MODEL"]],
        "`OPENAI_MODEL`",
    ),
    _S(
        "OPENAI_MAX_TOKENS",
        UPSTREAMS,
        "the largest `max_tokens` accepted, and the one sent when a task names none",
        integer(1, 32_768),
        1024,
    ),
    _S(
        "RETRY_BACKOFF_SECONDS",
        TASKS,
        "first backoff step of retries; then 2x, 4x (plus jitter, at most 60 s), "
        "never sooner than `Retry-After`",
        number(0, 60),
        1.0,
        tuning=True,
    ),
    _S(
        "MAX_RETRY_ATTEMPTS",
        TASKS,
        "retries of the task types that retry (transient failures), and of a "
        "`retry_policy` without `max_retries`",
        integer(0, MAX_RETRIES),
        3,
    ),
    _S(
        "DEFAULT_TASK_TIMEOUT",
        TASKS,
        "hard time limit in seconds of the task types without limits of their own; "
        "the soft one (the task is told) at two thirds of it",
        integer(2, 86400),
        45,
    ),
    _S(
        "TASKER_TASK_MODULES",
        TASKS,
        "modules that declare task types with `@tasker.task` (import paths, comma-separated), "
        "loaded by the API and every worker, besides the `tasker.tasks` entry points",
        LIST,
        [],
        "none",
        key="TASK_MODULES",
        convert=tuple,
    ),
    _S(
        "TASK_LIMITS",
        TASKS,
        "the named limits task types consume besides their declared ones, as `type=limit` "
        "(comma-separated); a limit paces its tasks once an admin sets it (`PUT /api/v1/limits/<name>`)",
        LIST,
        ["query_chatgpt=openai", "weather=openweather"],
        "query_chatgpt=openai,weather=openweather",
        convert=tuple,
    ),
    _S(
        "TASK_MAX_DELIVERIES",
        TASKS,
        "starts a task may have without finishing (its worker died), on top of its "
        "own retries; past it the task is `FAILED`",
        integer(1, 100),
        3,
        tuning=True,
    ),
    _S(
        "TASK_RETENTION_DAYS",
        TASKS,
        "finished tasks older than this are deleted (0: kept forever)",
        integer(0, 36_500),
        30,
    ),
    _S(
        "MAX_CONTENT_LENGTH",
        TASKS,
        "largest request body in bytes (larger: 413)",
        integer(1024, 64 * 1024 * 1024),
        1024 * 1024,
    ),
    _S(
        "RECOVERY_INTERVAL_SECONDS",
        RECOVERY,
        "how often beat runs the recovery sweep",
        integer(1, 86400),
        30,
        tuning=True,
    ),
    _S(
        "RECOVERY_PENDING_SECONDS",
        RECOVERY,
        "a `PENDING` task untouched this long is published again (a `RETRYING` one after this plus 60 s)",
        integer(1, 7 * 86400),
        300,
        tuning=True,
    ),
    _S(
        "RECOVERY_STARTED_SECONDS",
        RECOVERY,
        "a `STARTED` task that no worker reports running for this long is requeued (or `FAILED` at the cap)",
        integer(1, 86400),
        15,
        tuning=True,
    ),
    _S(
        "SCHEDULER_INTERVAL_SECONDS",
        RECOVERY,
        "how often beat fires the schedules and publishes the `SCHEDULED` tasks that are due",
        number(0.1, 60),
        1.0,
        tuning=True,
    ),
    _S(
        "RETENTION_INTERVAL_SECONDS",
        RECOVERY,
        "how often beat deletes finished tasks past their retention (500 rows per transaction)",
        integer(1, 86400),
        3600,
        tuning=True,
    ),
    _S(
        "AUTH_MODE",
        SECURITY,
        "`keys`: an API key on every call; `open`: none, for your own machine",
        _choice_lower("keys", "open"),
        _by_env(production="keys", other="open"),
        "`open` (`keys` in production)",
    ),
    _S(
        "SECRET_KEY",
        SECURITY,
        "at least 32 characters; API keys are stored as HMAC-SHA256 with it; the same on every API host",
        Reader(_secret_key, "at least 32 characters"),
        None,
        "required with keys in production; else made once in `TASKER_DATA_DIR`",
        secret=True,
    ),
    _S(
        "TRUSTED_HOSTS",
        SECURITY,
        "the `Host` names the API answers (others: 400)",
        LIST,
        _keys_mode(None, LOOPBACK_NAMES),
        "`localhost,127.0.0.1` in open mode, any in keys mode",
    ),
    _S("CORS_ORIGINS", SECURITY, "origins a browser page may call the API from", LIST, [], "empty: CORS off"),
    _S(
        "PROXY_HOPS",
        SECURITY,
        "proxies in front whose `X-Forwarded-For` is trusted, for per-address rate limits",
        integer(0, 5),
        0,
        "`0` (`1` in compose)",
    ),
    _S(
        "TRUSTED_PROXIES",
        SECURITY,
        "where `X-Forwarded-For` is believed from; a request from elsewhere counts at "
        "its own address, whatever it claims",
        NETWORKS,
        "127.0.0.0/8,::1",
        "`127.0.0.0/8,::1` (compose: its private networks)",
    ),
    _S(
        "SESSION_COOKIE_SECURE",
        SECURITY,
        "the dashboard's session cookie (keys mode) is sent over HTTPS only (and to `http://localhost`)",
        BOOLEAN,
        _by_env(production=True, other=False),
        "`true` in production, else `false`",
    ),
    _S(
        "SESSION_LIFETIME_HOURS",
        SECURITY,
        "a dashboard sign-in lasts this long at most (checked on the server)",
        number(0.1, 720),
        12.0,
        key="PERMANENT_SESSION_LIFETIME",
        convert=lambda hours: timedelta(hours=hours),
    ),
    _S(
        "RATE_LIMIT_ENABLED",
        LIMITS,
        "rate limits per key, or per address without one",
        BOOLEAN,
        _by_env(testing=False, other=True),
        "`true` (`false` in testing)",
    ),
    _S(
        "RATE_LIMIT_SUBMIT",
        LIMITS,
        "writes (POST, PATCH, DELETE) per key; a key's own `rate_limit` replaces it",
        RATE,
        "20/second;600/minute",
    ),
    _S(
        "RATE_LIMIT_READ",
        LIMITS,
        "reads (GET) per key; a key's own `rate_limit` replaces it",
        RATE,
        "100/second;3000/minute",
    ),
    _S(
        "RATE_LIMIT_INVALID_KEYS",
        LIMITS,
        "refused API keys per client address; past it a key is not looked up (429)",
        RATE,
        "20/minute",
    ),
    _S(
        "QUOTA_UNFINISHED_TASKS",
        LIMITS,
        "unfinished tasks per owner (0: no quota; over it: 429 `quota_exceeded`)",
        integer(0, 10**9),
        _keys_mode(10_000, 0),
        "`10000` in keys mode, `0` in open mode",
    ),
    _S(
        "QUOTA_SCHEDULES",
        LIMITS,
        "schedules per owner (0: no quota; over it: 429 `quota_exceeded`)",
        integer(0, 10**6),
        _keys_mode(100, 0),
        "`100` in keys mode, `0` in open mode",
    ),
    _S(
        "WORKFLOW_MAX_STEPS",
        LIMITS,
        "steps a workflow may declare (more: 400 naming `steps`)",
        integer(1, 1000),
        100,
    ),
    _S(
        "WORKFLOW_MAX_ITEMS",
        LIMITS,
        "the most items a map step may fan out to (`max_items` above it: 400; an array longer than a "
        "step's `max_items` at run time fails that step)",
        integer(1, 100000),
        1000,
    ),
    _S(
        "SCHEDULE_MIN_INTERVAL_SECONDS",
        LIMITS,
        "the shortest time a schedule may leave between two fire times",
        integer(60, 86400),
        60,
    ),
    _S(
        "WAIT_MAX_CONCURRENT",
        STREAMS,
        "`?wait=` requests that may wait at once per API process; more answer at once (`Tasker-Wait`)",
        integer(0, 1000),
        4,
        tuning=True,
    ),
    _S(
        "STREAM_MAX_CONCURRENT",
        STREAMS,
        "open event streams per API process, each on a thread gunicorn adds to `GUNICORN_THREADS`; more: 503",
        integer(0, 10_000),
        100,
        tuning=True,
    ),
    _S(
        "STREAM_MAX_PER_OWNER",
        STREAMS,
        "keys mode: open event streams one owner may hold in one API process; more: 429",
        integer(1, 10_000),
        10,
        tuning=True,
    ),
    _S(
        "STREAM_BACKLOG_KB",
        STREAMS,
        "changes that may wait for a stream's slow reader before the stream is closed (reason `behind`)",
        integer(64, 1024 * 1024),
        1024,
        tuning=True,
    ),
    _S(
        "STREAM_SEND_TIMEOUT_SECONDS",
        STREAMS,
        "a stream whose send makes no progress this long is ended",
        number(1, 600),
        30.0,
        tuning=True,
    ),
    _S(
        "STREAM_HEARTBEAT_SECONDS",
        STREAMS,
        "a comment line on an idle event stream this often, so proxies keep it open",
        number(1, 300),
        15.0,
        tuning=True,
    ),
    _S(
        "WEBHOOK_SECRET",
        WEBHOOKS,
        "open mode: the `whsec_` secret webhooks are signed with (two, space-separated, "
        "while receivers move to a new one); keys mode signs with each owner's own",
        WEBHOOK_SECRETS,
        None,
        "empty",
        secret=True,
    ),
    _S("WEBHOOK_ALLOW_HTTP", WEBHOOKS, "`true` lets a webhook URL be plain `http`", BOOLEAN, False),
    _S(
        "HTTP_TASK_ALLOWED_HOSTS",
        WEBHOOKS,
        "hosts `http_request` tasks may call: `api.example.com`, `*.example.com`, `host:port`; "
        "empty turns the type off. Names given whole may be private addresses; a pattern's, only public ones",
        HOSTS,
        [],
        "empty (off)",
    ),
    _S("HTTP_TASK_ALLOW_HTTP", WEBHOOKS, "`true` lets an `http_request` URL be plain `http`", BOOLEAN, False),
    _S(
        "WEBHOOK_ALLOWED_HOSTS",
        WEBHOOKS,
        "hosts a webhook may call though they are not public: `host:port` opens "
        "that port only, a bare `host` every port",
        HOSTS,
        [],
        "empty",
    ),
    _S(
        "WEBHOOK_RETRY_DELAYS",
        WEBHOOKS,
        "seconds between a delivery's attempts (10 % jitter, longer if the "
        "receiver's `Retry-After` asks); `FAILED` after the last",
        DELAYS,
        DEFAULT_WEBHOOK_RETRY_DELAYS,
    ),
    _S(
        "WEBHOOK_CONNECT_TIMEOUT_SECONDS",
        WEBHOOKS,
        "connect timeout of one delivery attempt",
        number(0.1, 30),
        3.0,
        tuning=True,
    ),
    _S(
        "WEBHOOK_TIMEOUT_SECONDS",
        WEBHOOKS,
        "the whole of one attempt, one wall clock: connect, send, the answer's "
        "headers and up to 64 KB of its body",
        number(0.5, 60),
        10.0,
    ),
    _S(
        "WEBHOOK_SECRET_OVERLAP_HOURS",
        WEBHOOKS,
        "how long the previous secret also signs after a rotation",
        number(0, 24 * 30),
        24.0,
    ),
    _S(
        "WEBHOOK_WORKER_THREADS",
        WEBHOOKS,
        "threads of a worker that consumes the `webhooks` queue alone "
        "(`-Q webhooks --pool=threads`); `--concurrency N` wins",
        integer(1, 256),
        8,
        tuning=True,
    ),
    _S(
        "LOG_LEVEL",
        LOGS,
        "at `INFO` every request and every task's start and outcome are logged",
        choice(*LOG_LEVELS),
        _by_env(testing="WARNING", other="INFO"),
        "`INFO` (`WARNING` in testing)",
    ),
    _S(
        "LOG_FORMAT",
        LOGS,
        "`json`: one JSON object per line",
        choice("TEXT", "JSON"),
        _by_env(production="json", other="text"),
        "`text` (`json` in production)",
        convert=str.lower,
    ),
    _S(
        "ACCESS_LOG",
        LOGS,
        "one line per request (method, route template, status, duration) at `INFO`",
        BOOLEAN,
        True,
    ),
    _S(
        "LOG_FILE",
        LOGS,
        "a file name; a bare name is written under `logs/`, rotated at 10 MB, 5 kept",
        TEXT,
        None,
        "empty: stdout",
    ),
    _S(
        "METRICS_ENABLED",
        LOGS,
        "`GET /metrics` and the request histogram; `false`: /metrics is a 404",
        BOOLEAN,
        True,
    ),
    _S(
        "METRICS_TOKEN",
        LOGS,
        "when set, /metrics needs `Authorization: Bearer <token>`",
        TEXT,
        None,
        "empty: /metrics open in open mode; with API keys, to the private network only",
    ),
    _S(
        "METRICS_SCRAPE_TIMEOUT_SECONDS",
        LOGS,
        "how long a scrape waits for the database and the broker; a source "
        "that takes longer is left out of that scrape",
        number(0.1, 30),
        2.0,
        tuning=True,
    ),
    _S(
        "PROMETHEUS_MULTIPROC_DIR",
        LOGS,
        "where the processes of one host record their metrics (emptied at start)",
        TEXT,
        None,
        "gunicorn and `python run.py`: a private temporary directory",
    ),
    _S(
        "WORKER_HEARTBEAT_SECONDS",
        LOGS,
        "how often each worker writes its heartbeat; it counts as online for three",
        number(0.1, 3600),
        10.0,
        tuning=True,
    ),
    _S(
        "WORKER_METRICS_PORT",
        LOGS,
        "a worker (or beat) serves its own `/metrics` on this port (needs "
        "`PROMETHEUS_MULTIPROC_DIR` set before it starts); 0: off",
        integer(0, 65535),
        0,
    ),
    _S("PORT", SERVING, "port of `python run.py` and of gunicorn", integer(1, 65535), 5000),
    _S(
        "HOST",
        SERVING,
        "address `python run.py` listens on",
        TEXT,
        None,
        "`127.0.0.1` in open mode, `0.0.0.0` in keys mode",
    ),
    _S(
        "GUNICORN_BIND",
        SERVING,
        "gunicorn's listen address",
        TEXT,
        lambda c: f"0.0.0.0:{c.values['PORT']}",
        "`0.0.0.0:$PORT`",
    ),
    _S(
        "WEB_CONCURRENCY",
        SERVING,
        "gunicorn worker processes",
        integer(1, 256),
        lambda c: multiprocessing.cpu_count() * 2,
        "2 x cores",
        tuning=True,
    ),
    _S(
        "GUNICORN_THREADS",
        SERVING,
        "threads per gunicorn process (gthread) for requests; event streams get `STREAM_MAX_CONCURRENT` more",
        integer(1, 1000),
        8,
        tuning=True,
    ),
    _S(
        "GUNICORN_ACCESS_LOG",
        SERVING,
        "gunicorn's own access log: `-` for stdout, or a file",
        TEXT,
        None,
        "empty: off",
    ),
)

NAMES = frozenset(setting.name for setting in DECLARED) | {"APP_ENV"}
