"""Fixtures: a private PostgreSQL database and Redis db per run, and real Celery workers.

With REQUIRE_SERVICES=1 a missing PostgreSQL or Redis fails the run instead of skipping.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import make_url

from app import create_app
from app.core.database_manager import DatabaseManager, normalize_url
from app.models.migrate import upgrade
from config import load_config, settings
from tests.support import WEBHOOK_SECRET, Receiver, kill_family, poll, start_celery, worker_options

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = normalize_url(
    os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
)
REDIS_SERVER = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
RABBITMQ_SERVER = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
CLAIM_KEY = "tasker-test:claimed-by"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`make test` runs the suite in parallel processes (pytest-xdist, --dist loadgroup): each
    stack's tests stay together in one process, so its database, broker, worker and beat are set
    up once; the fault suite is one more group (each of its tests starts servers of its own);
    unit tests go wherever a process is free."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        stack = callspec.params.get("stack") if callspec else None
        if "faults" in item.path.parts:
            group = "faults"
        elif stack is not None:
            group = f"stack-{stack}"
        else:
            continue
        item.add_marker(pytest.mark.xdist_group(group))


def unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A database of our own, migrated; dropped at the end of the run."""
    with new_database("tasker_test") as url:
        yield url


@pytest.fixture(scope="session")
def rabbit_database_url() -> Iterator[str]:
    """The RabbitMQ stack's database: its rows, workers and sweeps apart from the Redis stack's."""
    with new_database("tasker_rabbit") as url:
        yield url


@contextmanager
def new_database(prefix: str) -> Iterator[str]:
    """Create and migrate a PostgreSQL database named `prefix`_<pid>_<random>; drop it after."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        unavailable("PostgreSQL", exc)
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class RedisDbs:
    """Claims empty Redis db numbers for this run and flushes only those at the end."""

    def __init__(self) -> None:
        self.claimed: list[int] = []
        self.token = f"{os.getpid()}-{secrets.token_hex(4)}"

    def claim(self) -> str:
        """An empty db of the server's 15 (db 0 is left alone); when the suite's processes hold
        every one at once, the first given back."""
        return poll(self._claim, timeout=120, interval=0.2, what="an empty Redis db for the tests")

    def _claim(self) -> str | None:
        for number in range(15, 0, -1):
            if number in self.claimed:
                continue
            client = redis.Redis.from_url(f"{REDIS_SERVER}/{number}")
            try:
                if client.dbsize() == 0 and client.set(CLAIM_KEY, self.token, nx=True, ex=3600):
                    self.claimed.append(number)
                    return f"{REDIS_SERVER}/{number}"
            finally:
                client.close()
        return None

    def empty(self, url: str) -> None:
        """Delete every key of the claimed db `url` but the claim, which keeps it this run's
        (a FLUSHDB would let another test process claim it meanwhile)."""
        client = redis.Redis.from_url(url)
        keys = [key for key in client.keys("*") if key != CLAIM_KEY.encode()]
        if keys:
            client.delete(*keys)
        client.close()

    def release(self, url: str | None = None) -> None:
        """Flush and give back the db `url` names (None: every db this run claimed)."""
        numbers = [int(url.rsplit("/", 1)[1])] if url else list(self.claimed)
        for number in numbers:
            client = redis.Redis.from_url(f"{REDIS_SERVER}/{number}")
            if client.get(CLAIM_KEY) == self.token.encode():
                client.flushdb()
            client.close()
            self.claimed.remove(number)


@pytest.fixture(scope="session")
def redis_dbs() -> Iterator[RedisDbs]:
    try:
        redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        unavailable("Redis", exc)
    dbs = RedisDbs()
    yield dbs
    dbs.release()


class RabbitVhosts:
    """Virtual hosts of this run's own on the RabbitMQ server (rabbitmqctl add_vhost), each a
    broker to itself; deleted at the end of the run, and no other vhost is touched."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def create(self) -> str:
        name = f"tasker-test-{os.getpid()}-{secrets.token_hex(3)}"
        rabbitmqctl("add_vhost", name)
        self.created.append(name)
        user = make_url(RABBITMQ_SERVER.replace("amqp://", "postgresql://", 1)).username or "guest"
        rabbitmqctl("set_permissions", "-p", name, user, ".*", ".*", ".*")
        return f"{RABBITMQ_SERVER}/{name}"

    def release(self, url: str | None = None) -> None:
        """Delete the vhost `url` names (None: every vhost this run made)."""
        names = [url.rsplit("/", 1)[1]] if url else list(self.created)
        for name in names:
            rabbitmqctl("delete_vhost", name)
            self.created.remove(name)


def rabbitmqctl(*args: str, node: str | None = None) -> str:
    command = ["rabbitmqctl", *(["-n", node] if node else []), "--quiet", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr or done.stdout}")
    return done.stdout


@pytest.fixture(scope="session")
def rabbit_vhosts() -> Iterator[RabbitVhosts]:
    from kombu import Connection
    from kombu.exceptions import KombuError

    try:
        with Connection(RABBITMQ_SERVER, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        subprocess.run(["rabbitmqctl", "--quiet", "status"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError, KombuError) as exc:
        unavailable("RabbitMQ (and rabbitmqctl)", exc)
    vhosts = RabbitVhosts()
    yield vhosts
    vhosts.release()


@pytest.fixture(scope="session")
def openai_server() -> Iterator[HTTPServer]:
    """A real local HTTP server standing in for the OpenAI API (threaded: a slow reply blocks nothing)."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def openai(openai_server: HTTPServer) -> Iterator[HTTPServer]:
    openai_server.clear()
    yield openai_server
    openai_server.clear()


# Settings a developer may have exported; child processes get only what a test gives them.
SETTINGS = settings.NAMES


# What no log line may hold: the upstream keys the tests configure, an API key, a bearer token.
LOG_SECRETS = re.compile(
    r"sk-test-key|owm-test-key|tsk_[0-9A-Za-z]{20,}|Bearer [^\s\"']{8,}|whsec_[0-9A-Za-z+/]{20,}|hdr-secret-"
)


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """At the end of the run, every log line written during it is searched for secrets: this
    process's (a handler on the root logger) and every worker's, beat's, gunicorn's and run.py's
    (their logs are under the run's temporary directory)."""
    base = tmp_path_factory.getbasetemp()
    handler = logging.FileHandler(base / "in-process.log")
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    # The stand-in upstreams (pytest-httpserver) log the requests they receive, keys in the query
    # string included, through werkzeug in this process: the upstream's log, not Tasker's.
    handler.addFilter(lambda record: record.name != "werkzeug")
    root = logging.getLogger()
    root.addHandler(handler)
    yield
    root.removeHandler(handler)
    handler.close()
    leaks = []
    for path in sorted(base.rglob("*.log")):
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if LOG_SECRETS.search(line):
                leaks.append(f"{path.relative_to(base)}:{number}: {line[:300]}")
    assert not leaks, "secrets in the logs:\n" + "\n".join(leaks[:20])


def child_env(env: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in SETTINGS}, **env}


@dataclass
class Stack:
    """One set of backends the integration suite runs on."""

    name: str
    env: dict[str, str]
    make_broker: Callable[[], str]  # a broker of its own: its URL (embedded: a data directory)
    drop_broker: Callable[[str], None] = lambda _: None
    made: list[str] = field(default_factory=list)

    def new_broker(self) -> dict[str, str]:
        """Env changes that give a broker of the test's own (given back when the test ends)."""
        self.made.append(self.make_broker())
        if self.embedded:  # the filesystem broker lives in the data directory; the database stays
            return {"TASKER_DATA_DIR": self.made[-1], "DATABASE_URL": self.config["DATABASE_URL"]}
        return {"CELERY_BROKER_URL": self.made[-1]}

    def drop_brokers(self, since: int = 0) -> None:
        """Give back the brokers made after the first `since`."""
        while len(self.made) > since:
            self.drop_broker(self.made.pop())

    @property
    def config(self) -> dict[str, Any]:
        return load_config("testing", self.env)

    @property
    def embedded(self) -> bool:
        return self.name == "embedded"


def openai_env(openai_server: HTTPServer) -> dict[str, str]:
    return {
        "APP_ENV": "testing",
        "OPENAI_BASE_URL": openai_server.url_for("/v1"),
        "OPENAI_API_KEY": "sk-test-key",
        "OPENAI_MODEL": "gpt-test",
        "OPENAI_ALLOWED_MODELS": "gpt-test,gpt-other",
        "OPENAI_READ_TIMEOUT_SECONDS": "1",
        "OPENWEATHER_BASE_URL": openai_server.url_for("/owm"),
        "OPENWEATHER_API_KEY": "owm-test-key",
        "OPENWEATHER_READ_TIMEOUT_SECONDS": "1",
        "RETRY_BACKOFF_SECONDS": "0.05",
        "LOG_LEVEL": "INFO",
        "STREAM_HEARTBEAT_SECONDS": "1",  # a stream test that waits in vain ends at its deadline
        # The example package of task types of one's own (examples/mytasks, installed by
        # requirements-dev.txt): the API and every worker of the suite serve its types too, and
        # tests/effects.py's, which count side effects in files.
        "TASKER_TASK_MODULES": "mytasks,tests.effects",
        # Webhooks to the tests' receivers on 127.0.0.1 (opened by name: nothing else is), signed
        # with a test secret, retried after 1, 2, 4, 8 s and then every 10 s for 20 minutes (the
        # session's receiver outage spans a stack's tests), 2 s per attempt.
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_RETRY_DELAYS": ",".join(["1", "2", "4", "8"] + ["10"] * 120),  # 20 more minutes
        "WEBHOOK_TIMEOUT_SECONDS": "2",
        # http_request to the tests' receivers on 127.0.0.1, named whole (nothing else is allowed).
        "HTTP_TASK_ALLOWED_HOSTS": "127.0.0.1",
        "HTTP_TASK_ALLOW_HTTP": "true",
    }


@pytest.fixture(scope="session", params=["real", "rabbit", "embedded"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, openai_server: HTTPServer
) -> Stack:
    """real: PostgreSQL + Redis. rabbit: PostgreSQL + RabbitMQ as the broker, Redis as the cache.
    embedded: SQLite + Celery's filesystem transport + in-process cache."""
    base = openai_env(openai_server)
    if request.param == "rabbit":
        vhosts: RabbitVhosts = request.getfixturevalue("rabbit_vhosts")
        env = {
            **base,
            "DATABASE_URL": request.getfixturevalue("rabbit_database_url"),
            "CELERY_BROKER_URL": vhosts.create(),
            "REDIS_URL": request.getfixturevalue("redis_dbs").claim(),
            "TASKER_DATA_DIR": str(tmp_path_factory.mktemp("rabbit")),
        }
        return Stack("rabbit", env, vhosts.create, vhosts.release)
    if request.param == "real":
        dbs: RedisDbs = request.getfixturevalue("redis_dbs")
        env = {
            **base,
            "DATABASE_URL": request.getfixturevalue("database_url"),
            "REDIS_URL": dbs.claim(),
            "TASKER_DATA_DIR": str(tmp_path_factory.mktemp("real")),
        }
        return Stack("real", env, dbs.claim, dbs.release)
    data_dir = tmp_path_factory.mktemp("embedded")
    env = {**base, "TASKER_DATA_DIR": str(data_dir)}
    database_url = load_config("testing", env)["DATABASE_URL"]
    engine = sa.create_engine(database_url)
    upgrade(engine)
    engine.dispose()
    return Stack("embedded", env, lambda: str(tmp_path_factory.mktemp("broker")))


@pytest.fixture(autouse=True)
def brokers_given_back(request: pytest.FixtureRequest) -> Iterator[None]:
    """A broker a test made for itself (Redis db, RabbitMQ vhost) is given back when it ends, so
    the few Redis dbs go round. Those a module's fixture made (set up before this one) stay."""
    stack = request.getfixturevalue("stack") if "stack" in request.fixturenames else None
    mark = len(stack.made) if isinstance(stack, Stack) else 0
    yield
    if isinstance(stack, Stack):
        stack.drop_brokers(since=mark)


@pytest.fixture(scope="session")
def stack_env(stack: Stack) -> dict[str, str]:
    """The environment both the API under test and the worker processes get."""
    return stack.env


def build_app(env: dict[str, str]) -> Any:
    return create_app("testing", load_config("testing", env))


@pytest.fixture
def app(stack_env: dict[str, str]) -> Iterator[Any]:
    app = build_app(stack_env)
    yield app
    app.extensions["tasker"].db.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def db(app: Any) -> DatabaseManager:
    """The app's DatabaseManager: tests read rows through the same queries the service uses."""
    return app.extensions["tasker"].db


WorkerFactory = Callable[..., subprocess.Popen]


@pytest.fixture(scope="session")
def start_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerFactory]:
    """Start `celery -A celery_worker.celery worker` processes; all are stopped at the end."""
    started: list[subprocess.Popen] = []

    def start(env: dict[str, str], concurrency: int = 2, name: str = "worker") -> subprocess.Popen:
        log = tmp_path_factory.mktemp("worker") / f"{name}.log"
        options = worker_options(f"{name}-{os.getpid()}@%h", concurrency)
        process = start_celery("worker", child_env(env), log, *options, timeout=30)
        started.append(process)
        return process

    yield start
    for process in started:
        kill_family(process)


@pytest.fixture(scope="session")
def beat(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen]:
    """`celery beat` for the stack: it publishes SCHEDULED tasks when due and runs the recovery sweep."""
    log = tmp_path_factory.mktemp("beat") / "beat.log"
    process = start_celery("beat", child_env(stack.env), log, timeout=30)
    yield process
    kill_family(process)


@dataclass
class Outage:
    """A webhook receiver that is down: its port is chosen, nothing listens there yet."""

    receiver: Receiver
    task_id: str
    began: float


@pytest.fixture(scope="session")
def receiver_outage(stack: Stack) -> Iterator[Outage]:
    """A task whose webhook receiver is down from the start of a stack's tests until the last test
    of test_webhooks.py brings it up: the session's worker asks for it, so the outage's minute
    passes while the other tests run instead of in a wait of its own."""
    app = build_app(stack.env)
    receiver = Receiver()
    body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "webhook": {"url": receiver.url("/down")}}
    response = app.test_client().post("/api/v1/tasks", json=body)
    assert response.status_code == 202, response.get_json()
    app.extensions["tasker"].db.dispose()
    yield Outage(receiver, response.get_json()["id"], time.monotonic())
    receiver.stop()


@pytest.fixture(scope="session")
def worker(start_worker: WorkerFactory, stack: Stack, receiver_outage: Outage) -> Iterator[subprocess.Popen]:
    process = start_worker(stack.env, name=f"worker-{stack.name}")
    yield process
    kill_family(process)
