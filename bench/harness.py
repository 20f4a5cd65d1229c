"""What the throughput benchmarks share: a private Redis, a throwaway PostgreSQL database,
gunicorn and Celery processes, and wrk. Everything started here is stopped on exit."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.database_manager import normalize_url  # noqa: E402
from app.models.migrate import upgrade  # noqa: E402

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
GUNICORN_WORKERS = 4
CONNECTIONS = 16
BODY = '{"task_name": "sum_two_numbers", "task_parameters": {"a": 1, "b": 2}}'
# The v1 submit (POST /api/v1/tasks): its 202 carries the whole task resource.
V1_BODY = '{"name": "sum_two_numbers", "parameters": {"a": 1, "b": 2}}'
# What each submit endpoint is sent: its path and body.
SUBMITS = {"run-task": ("/run-task", BODY), "v1": ("/api/v1/tasks", V1_BODY)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir)]
    with processes() as started:
        started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        wait_until(lambda: answers(port), 10, "redis-server")
        yield port


@contextlib.contextmanager
def rabbit_vhost() -> Iterator[str]:
    """A RabbitMQ vhost of the benchmark's own on the machine's RabbitMQ (guest, 127.0.0.1:5672),
    deleted at the end: its broker URL."""
    name = f"tasker-bench-{secrets.token_hex(4)}"
    subprocess.run(["rabbitmqctl", "--quiet", "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run(
            ["rabbitmqctl", "--quiet", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"],
            check=True, capture_output=True,
        )  # fmt: skip
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        subprocess.run(["rabbitmqctl", "--quiet", "delete_vhost", name], capture_output=True)


@contextlib.contextmanager
def database() -> Iterator[str]:
    """A migrated throwaway database on TEST_POSTGRES_URL's server, dropped at the end."""
    name = f"tasker_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_url(ADMIN_URL)).set(database=name).render_as_string(hide_password=False)
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url.replace("+psycopg2", "")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class Stack:
    env: dict[str, str]
    started: list[subprocess.Popen]
    workdir: Path

    def gunicorn(self, app: str, ready_path: str, env: dict[str, str] | None = None) -> int:
        """gunicorn with Tasker's gunicorn.conf.py and GUNICORN_WORKERS processes; its port, once
        every process answers `ready_path` (the master listens before its workers have loaded)."""
        port = free_port()
        extra = {"GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(GUNICORN_WORKERS)}
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app]
        log = (self.workdir / f"gunicorn-{port}.log").open("w")
        self.started.append(
            subprocess.Popen(
                command, cwd=ROOT, env={**self.env, **extra, **(env or {})}, stdout=log, stderr=log
            )
        )
        wait_until(lambda: answers(port), 30, f"gunicorn {app}")
        url = f"http://127.0.0.1:{port}{ready_path}"
        for _ in range(GUNICORN_WORKERS * 4):  # new connections spread over the processes
            wait_until(lambda: _status(url) == 200, 30, f"{url} to answer 200")
        return port

    def celery_worker(
        self, app: str, concurrency: int, queues: str = "default", extra: tuple[str, ...] = ()
    ) -> subprocess.Popen:
        log = self.workdir / f"worker-{len(self.started)}.log"
        # The worker logs at the stack's LOG_LEVEL, as `make run` and compose start it at theirs.
        level = self.env.get("LOG_LEVEL", "WARNING")
        command = [sys.executable, "-m", "celery", "-A", app, "worker", f"--loglevel={level}",
                   f"--concurrency={concurrency}", "-Q", queues, "--without-mingle", "--without-gossip",
                   f"--hostname=bench{len(self.started)}@%h", *extra]  # fmt: skip
        with log.open("w") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def beat(self, app: str) -> subprocess.Popen:
        log = self.workdir / "beat.log"
        command = [sys.executable, "-m", "celery", "-A", app, "beat", "--loglevel=WARNING",
                   "--schedule", str(self.workdir / "beat-schedule")]  # fmt: skip
        with log.open("w") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process


@contextlib.contextmanager
def stack(log_level: str = "WARNING") -> Iterator[Stack]:
    """Tasker's environment on a throwaway database and a private Redis (broker db 0, cache db 1)."""
    workdir = Path(tempfile.mkdtemp(prefix="tasker-bench-"))
    try:
        with database() as url, redis_server(workdir) as port, processes() as started:
            env = {
                **{
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("DATABASE_", "REDIS_", "CELERY_"))
                },
                "APP_ENV": "production",
                # Open and unlimited unless a benchmark turns keys and limits on (submit.py --keys).
                "AUTH_MODE": "open",
                "RATE_LIMIT_ENABLED": "false",
                "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
                "DATABASE_URL": url,
                "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
                "REDIS_URL": f"redis://127.0.0.1:{port}/1",
                "TASKER_DATA_DIR": str(workdir / "data"),
                "LOG_LEVEL": log_level,
                "PYTHONPATH": str(ROOT),
            }
            yield Stack(env, started, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Load:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int

    def __str__(self) -> str:
        rate = f"{self.requests_per_second:.0f} req/s"
        return f"{rate}, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, errors {self.errors}"


def wrk(
    url: str,
    seconds: float,
    method: str = "GET",
    body: str | None = None,
    headers: dict[str, str] | None = None,
    connections: int = CONNECTIONS,
    lua: str = "",
) -> Load:
    """wrk at `connections` (CONNECTIONS) for `seconds`; non-2xx answers and socket errors count as
    errors. `lua`: more of wrk's script (a `request` function that varies the body)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lines = [f'wrk.method = "{method}"', 'wrk.headers["Content-Type"] = "application/json"']
    if body is not None:
        lines.append(f"wrk.body = [[{body}]]")
    for name, value in (headers or {}).items():
        lines.append(f'wrk.headers["{name}"] = "{value}"')
    script.write_text("\n".join(lines) + "\n" + lua)
    try:
        command = [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    finally:
        script.unlink()
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(
        requests_per_second=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),
        p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),
        errors=errors + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def _processes() -> dict[int, tuple[int, str, float]]:
    """Every process: its parent, its name and the CPU seconds it has used (user + system)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                head, tail = (entry / "stat").read_text().rsplit(")", 1)
            except OSError:
                continue
            fields = tail.split()
            found[int(entry.name)] = (
                int(fields[1]),
                head.split("(", 1)[1],
                (int(fields[11]) + int(fields[12])) / ticks,
            )
    return found


class CpuMeter:
    """CPU seconds used between start() and stop() by the processes under each of `trees` (pid by
    label) and by every process whose name is one of `names` (label by process name). A process
    that ends in between is not counted: keep them alive (gunicorn's max_requests off)."""

    def __init__(self, trees: dict[str, int], names: dict[str, str]):
        self.trees, self.names = trees, names
        self._before: dict[int, float] = {}

    def _labelled(self) -> dict[int, tuple[str, float]]:
        table = _processes()
        found: dict[int, tuple[str, float]] = {}
        for label, root in self.trees.items():
            family, frontier = {root}, {root}
            while frontier:
                frontier = {pid for pid, (parent, _, _) in table.items() if parent in frontier} - family
                family |= frontier
            found |= {pid: (label, table[pid][2]) for pid in family if pid in table}
        for pid, (_, comm, cpu) in table.items():
            if comm in self.names:
                found[pid] = (self.names[comm], cpu)
        return found

    def start(self) -> None:
        self._before = {pid: cpu for pid, (_, cpu) in self._labelled().items()}

    def stop(self) -> dict[str, float]:
        used = dict.fromkeys([*self.trees, *self.names.values()], 0.0)
        for pid, (label, cpu) in self._labelled().items():
            used[label] += cpu - self._before.get(pid, 0.0)
        return used


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except (OSError, urllib.error.HTTPError):
        return 0


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


# Submitting N tasks: wrk sends them, since a Python HTTP client on these 2 cores could not keep
# up and the figure would be the client's. Each of wrk's 2 threads stops sending once it has had
# its share of answers, and wrk is stopped once PostgreSQL holds the new rows (it would run on
# otherwise); a few more may have been in flight, so callers count the rows.
SUBMIT_N = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[%(body)s]]
local answers, share = 0, %(share)d
function response(status, headers, body)
  answers = answers + 1
  if answers >= share then wrk.thread:stop() end
end
"""


@dataclass
class Tasker:
    """Tasker under gunicorn with one Celery worker of 2 prefork processes, and its database."""

    base: str
    gunicorn: subprocess.Popen
    worker: subprocess.Popen
    engine: sa.Engine

    def count(self, where: str = "") -> int:
        with self.engine.connect() as conn:
            return conn.scalar(sa.text(f"SELECT count(*) FROM tasks {where}"))

    def submit(self, tasks: int) -> int:
        """POST /run-task about `tasks` times at CONNECTIONS connections; the rows there are then."""
        target = self.count() + tasks
        script = Path(tempfile.mkstemp(suffix=".lua")[1])
        script.write_text(SUBMIT_N % {"body": BODY, "share": -(-tasks // 2)})
        command = ["wrk", "-t2", f"-c{CONNECTIONS}", "-d600s", "-s", str(script), f"{self.base}/run-task"]
        wrk = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            wait_until(lambda: self.count() >= target, 600, f"{tasks} submissions")
        finally:
            wrk.terminate()
            wrk.wait()
            script.unlink()
        return self.count()

    def wait_completed(self, rows: int) -> None:
        wait_until(lambda: self.count("WHERE status = 'COMPLETED'") >= rows, 900, f"{rows} tasks to complete")


@contextlib.contextmanager
def tasker(s: Stack, worker_options: tuple[str, ...] = (), concurrency: int = 2) -> Iterator[Tasker]:
    port = s.gunicorn("run:app", "/health")
    gunicorn = s.started[-1]
    worker = s.celery_worker("celery_worker.celery", concurrency=concurrency, extra=worker_options)
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: _status(f"{base}/health/ready") == 200, 60, "a Tasker worker")
    engine = sa.create_engine(normalize_url(s.env["DATABASE_URL"]))
    try:
        yield Tasker(base, gunicorn, worker, engine)
    finally:
        engine.dispose()
