"""Fixtures for the fault-injection suite: private servers to break, and workers to kill.

A test that stops, flushes or pauses Redis gets a redis-server of its own on a free port, so
the machine's shared Redis is never disturbed. Short recovery thresholds come from the
settings (RECOVERY_*), not from waiting longer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from app.core.database_manager import normalize_url
from app.models.migrate import upgrade
from config import load_config
from tests.conftest import (
    RabbitVhosts,
    build_app,
    child_env,
    new_database,
    openai_env,
    rabbitmqctl,
    unavailable,
)
from tests.support import (
    TERMINAL,
    alive,
    children_of,
    free_port,
    kill_family,
    poll,
    row_of,
    start_celery,
    stop_process,
    worker_options,
)

# The sweep runs every second and acts after 2-3 s, so a fault is repaired within seconds.
FAST_RECOVERY = {
    "APP_ENV": "testing",
    "LOG_LEVEL": "INFO",
    "RECOVERY_INTERVAL_SECONDS": "1",
    "RECOVERY_PENDING_SECONDS": "3",
    "RECOVERY_STARTED_SECONDS": "1",
    "TASK_MAX_DELIVERIES": "2",
}


@dataclass
class RedisServer:
    """A redis-server of the test's own, which the test may shut down, flush or pause."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(self.directory)]
        with (self.directory / "redis.log").open("a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        poll(self._answers, timeout=10, what="redis-server to answer")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def shutdown_nosave(self) -> None:
        """Stop at once, losing every message (Redis without persistence)."""
        try:
            self.client().shutdown(nosave=True)
        except redis.ConnectionError:
            pass
        assert self.process is not None
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # in case a test left it stopped
            stop_process(self.process, timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


@dataclass
class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl), which the test may restart."""

    directory: Path
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/tasker"

    def _run(self, *command: str) -> None:
        assert PG_BIN is not None
        argv = [str(PG_BIN / command[0]), *command[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.directory / "data"), "-A", "trust", "-U", "postgres", "--no-sync")
        self.start()
        admin_url = normalize_url(self.url.rsplit("/", 1)[0] + "/postgres")
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE DATABASE tasker"))
        admin.dispose()
        engine = sa.create_engine(normalize_url(self.url))
        upgrade(engine)
        engine.dispose()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-o", options, "-l",
                  str(self.directory / "pg.log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.directory / "data" / "postmaster.pid").exists()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    if PG_BIN is None:
        unavailable("PostgreSQL's binaries (initdb, pg_ctl)", FileNotFoundError("/usr/lib/postgresql/*/bin"))
    # Under /tmp itself: the postgres user cannot enter pytest's private temporary folders.
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="tasker-pg-")))
    try:
        server.init()
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@dataclass
class RabbitNode:
    """A RabbitMQ node of the test's own (its own node name, ports and data), which the test may
    stop and start (`rabbitmqctl stop_app` / `start_app`) without touching the machine's broker."""

    directory: Path
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def node(self) -> str:
        return f"tasker-fault-{self.port}@localhost"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> None:
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        if os.geteuid() == 0:  # rabbitmq-server runs as the rabbitmq user, who must own its files
            for path in [self.directory, *self.directory.iterdir()]:
                shutil.chown(path, "rabbitmq", "rabbitmq")
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.directory / "pid"),
        }
        with (self.directory / "server.log").open("a") as log:
            self.process = subprocess.Popen(
                ["rabbitmq-server"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.await_listening()

    def await_listening(self) -> None:
        """Until the AMQP port accepts connections (the node opens it once fully booted)."""

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"rabbitmq-server exited with {self.process.returncode}:\n{log}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        poll(listening, timeout=60, interval=0.2, what=f"RabbitMQ node {self.node} to listen")

    def stop_app(self) -> None:
        rabbitmqctl("stop_app", node=self.node)

    def start_app(self) -> None:
        rabbitmqctl("start_app", node=self.node)
        self.await_listening()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            rabbitmqctl("stop", node=self.node)
            self.process.wait(timeout=30)
        except (RuntimeError, subprocess.TimeoutExpired):
            kill_family(self.process)  # the node did not stop when asked: the server and its VM


@dataclass
class Fault:
    """One stack to break: its env, the app (API) on it, and the processes the test started."""

    kind: str
    env: dict[str, str]
    tmp: Path
    redis: RedisServer | None = None
    rabbit: RabbitNode | None = None
    processes: list[subprocess.Popen] = field(default_factory=list)
    _app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            self._app = build_app(self.env)
        return self._app

    @property
    def client(self) -> Any:
        return self.app.test_client()

    @property
    def db(self) -> Any:
        return self.app.extensions["tasker"].db

    def start_worker(
        self, name: str, concurrency: int = 2, queues: str = "default", *extra: str
    ) -> subprocess.Popen:
        options = [*worker_options(f"{name}@%h", concurrency, queues), *extra]
        return self._started(start_celery("worker", child_env(self.env), self.tmp / f"{name}.log", *options))

    def start_beat(self) -> subprocess.Popen:
        schedule = ["--schedule", str(self.tmp / "beat-schedule")]
        return self._started(start_celery("beat", child_env(self.env), self.tmp / "beat.log", *schedule))

    def _started(self, process: subprocess.Popen) -> subprocess.Popen:
        self.processes.append(process)
        return process

    def kill_hard(self, process: subprocess.Popen) -> None:
        """kill -9 a worker and every process under it at once, as a machine failure would."""
        family = children_of(process.pid)
        kill_family(process)
        poll(lambda: not any(alive(pid) for pid in family), timeout=10, what="the killed processes to go")

    def submit(self, name: str, parameters: dict[str, Any], client: Any = None) -> Any:
        body = {"name": name, "parameters": parameters}
        return (client or self.client).post("/api/v1/tasks", json=body)

    def rows(self, ids: list[str]) -> list[Any]:
        return [row_of(self.db, task_id) for task_id in ids]

    def wait_terminal(self, ids: list[str], timeout: float = 90) -> list[Any]:
        def done() -> list[Any] | None:
            rows = self.rows(ids)
            return rows if all(row.status in TERMINAL for row in rows) else None

        try:
            return poll(done, timeout=timeout, interval=0.2, what=f"{len(ids)} tasks to finish")
        except AssertionError as error:
            raise AssertionError(f"{error}\n{self.report(ids)}") from None

    def report(self, ids: list[str]) -> str:
        """What a failed wait needs: the rows not finished, and the end of each process's log."""
        stuck = [row for row in self.rows(ids) if row.status not in TERMINAL]
        lines = [f"{row.id} {row.status} attempts={row.attempts} worker={row.worker}" for row in stuck]
        for process in self.processes:
            path = getattr(process, "log_path", None)
            if path is not None and path.exists():
                tail = path.read_text(errors="replace").splitlines()[-40:]
                lines += [f"--- {path.name} (pid {process.pid}, exit {process.poll()})", *tail]
        return "\n".join(lines)

    def close(self) -> None:
        """Kill what the test started (a graceful stop is not under test here, and takes seconds)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                self.kill_hard(process)
        if self._app is not None:
            self._app.extensions["tasker"].db.dispose()


def real_env(redis_server: RedisServer, database_url: str, tmp: Path, openai_server: Any) -> dict[str, str]:
    return {
        **openai_env(openai_server),
        **FAST_RECOVERY,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_server.url(0),
        "REDIS_URL": redis_server.url(1),
        "TASKER_DATA_DIR": str(tmp / "data"),
    }


def embedded_env(tmp: Path, openai_server: Any) -> dict[str, str]:
    (tmp / "data").mkdir()
    env = {**openai_env(openai_server), **FAST_RECOVERY, "TASKER_DATA_DIR": str(tmp / "data")}
    engine = sa.create_engine(load_config("testing", env)["DATABASE_URL"])
    upgrade(engine)
    engine.dispose()
    return env


@pytest.fixture
def fault_database() -> Iterator[str]:
    """A PostgreSQL database for one test: no other test's rows, workers or sweeps touch it."""
    with new_database("tasker_fault") as url:
        yield url


@contextmanager
def redis_backed(
    kind: str, database: str, tmp_path: Path, openai_server: Any, broker_url: str = "", node: Any = None
) -> Iterator[Fault]:
    """A stack on PostgreSQL and a private Redis: the cache, and the broker unless `broker_url`."""
    server = RedisServer(tmp_path)
    server.start()
    env = real_env(server, database, tmp_path, openai_server)
    fault = Fault(
        kind, env | ({"CELERY_BROKER_URL": broker_url} if broker_url else {}), tmp_path, server, node
    )
    try:
        yield fault
    finally:
        fault.close()
        server.stop()


@pytest.fixture
def real(fault_database: str, tmp_path: Path, openai_server: Any) -> Iterator[Fault]:
    """PostgreSQL (a database of the test's own) and a private Redis as broker and cache."""
    with redis_backed("real", fault_database, tmp_path, openai_server) as fault:
        yield fault


@pytest.fixture
def embedded(tmp_path: Path, openai_server: Any) -> Iterator[Fault]:
    """The embedded default: SQLite and the filesystem broker under a data directory of its own."""
    fault = Fault("embedded", embedded_env(tmp_path, openai_server), tmp_path)
    try:
        yield fault
    finally:
        fault.close()


@pytest.fixture
def rabbit(
    fault_database: str, tmp_path: Path, openai_server: Any, rabbit_vhosts: RabbitVhosts
) -> Iterator[Fault]:
    """PostgreSQL (a database of the test's own), a vhost of its own on the machine's RabbitMQ as
    the broker, and a private Redis as the cache."""
    broker = rabbit_vhosts.create()
    with redis_backed("rabbit", fault_database, tmp_path, openai_server, broker) as fault:
        yield fault


@pytest.fixture
def private_rabbit(fault_database: str, tmp_path: Path, openai_server: Any) -> Iterator[Fault]:
    """As `rabbit`, but the broker is a RabbitMQ node of the test's own, which it may stop."""
    if shutil.which("rabbitmq-server") is None:
        unavailable("rabbitmq-server", FileNotFoundError("rabbitmq-server"))
    node = RabbitNode(Path(tempfile.mkdtemp(prefix="tasker-rabbit-")))
    try:
        node.start()
        with redis_backed("rabbit", fault_database, tmp_path, openai_server, node.url, node) as fault:
            yield fault
    finally:
        node.stop()
        shutil.rmtree(node.directory, ignore_errors=True)


@pytest.fixture(params=["real", "rabbit", "embedded"])
def stack_fault(request: pytest.FixtureRequest) -> Fault:
    """Each stack in turn: PostgreSQL + Redis, PostgreSQL + RabbitMQ, and the embedded default."""
    return request.getfixturevalue(request.param)
