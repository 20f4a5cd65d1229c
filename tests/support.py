"""Helpers shared by the tests: polling with a deadline, free ports, process control."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests

from app.models import task as task_model
from app.tasks.registry import build_registry

T = TypeVar("T")
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}
ROOT = Path(__file__).resolve().parent.parent


def poll(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)  # the pause between two looks


def wait_for_output(client: Any, task_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll GET /get-task-output until the task is terminal; return its task_output."""

    def terminal() -> dict[str, Any] | None:
        response = client.get(f"/get-task-output?task_uuid={task_id}")
        assert response.status_code == 200, response.get_json()
        output = response.get_json()["task_output"]
        return output if output["status"] in TERMINAL else None

    return poll(terminal, timeout, what=f"task {task_id} to finish")


def row_of(db: Any, task_id: Any) -> Any:
    """The task's row, read with the service's own query (works on PostgreSQL and SQLite)."""
    return db.run(lambda conn: task_model.get(conn, uuid.UUID(str(task_id))))


REGISTRY = build_registry()  # the task types with the default settings


def claim(conn: Any, task_id: Any, worker: str | None = None) -> int | None:
    """What a worker's claim makes of the row: its attempts, or None if it may not run."""
    row = task_model.claim_row(conn, task_id, worker)
    return None if row is None else row.attempts


def insert_task(
    db: Any, name: str = "sum_two_numbers", parameters: dict[str, Any] | None = None, **extra: Any
) -> uuid.UUID:
    """A row that no message points at (nothing runs it unless a test publishes it); `extra` sets columns."""
    task_id = uuid.uuid4()
    values = {"a": 1, "b": 2} if parameters is None else parameters
    db.run(lambda c: task_model.insert(c, task_id, name, values, "default", **extra))
    return task_id


def make_old(db: Any, task_id: Any, column: str, age: timedelta = timedelta(hours=1)) -> None:
    """Move one timestamp of one row back by `age`, so only that row is old enough for a sweep."""
    tasks = task_model.tasks
    db.run(
        lambda c: c.execute(
            tasks.update().where(tasks.c.id == task_id).values({column: task_model.database_now(c) - age})
        )
    )


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


_ports = random.Random()


def free_port() -> int:
    """A free local port below the kernel's ephemeral range.

    A port from the ephemeral range can be taken by any outgoing connection, or
    even by a client's connection to itself, while a server the test stopped is
    down; its restart then fails to bind. Ports below the range are only ever
    handed out on purpose.
    """
    low, high = _ephemeral_range()
    span = (10000, low) if low > 11000 else (high + 1, 65535)
    for _ in range(200):
        port = _ports.randrange(*span)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {span}")


def answers(url: str) -> bool:
    """True once `url` answers 200 (False while nothing listens yet)."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def closed_port() -> int:
    """A local port nothing listens on (connections are refused at once)."""
    return free_port()


def wait_for_log(path: Path, text: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    def seen() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"process exited with {process.returncode}:\n{path.read_text()[-3000:]}")
        return path.exists() and text in path.read_text(errors="replace")

    poll(seen, timeout, interval=0.1, what=f"{text!r} in {path}")


def stop_process(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stop a process we started; kill it if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def kill_family(process: subprocess.Popen) -> None:
    """SIGKILL a process we started and everything under it: for workers whose graceful
    shutdown is not what a test is about (a warm Celery shutdown takes seconds)."""
    family = children_of(process.pid) | {process.pid} if process.poll() is None else set()
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)


def children_of(pid: int) -> set[int]:
    """PIDs of every live descendant of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def start_gunicorn(env: dict[str, str], log: Path) -> subprocess.Popen:
    """`gunicorn -c gunicorn.conf.py run:app` (compose's command) with `env`, logging to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "run:app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


CELERY_READY = {"worker": " ready.", "beat": "beat: Starting..."}


def start_celery(
    kind: str, env: dict[str, str], log: Path, *options: str, cwd: Path | None = None, timeout: float = 60.0
) -> subprocess.Popen:
    """`celery -A celery_worker.celery --quiet worker|beat OPTIONS` (docker-compose.yml's command),
    logging to `log`, once it says it is ready."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_worker.celery",
        "--quiet",
        kind,
        "--loglevel=INFO",
        *options,
    ]
    with log.open("a") as out:
        process = subprocess.Popen(
            command,
            cwd=cwd or Path(__file__).resolve().parent.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    process.log_path = log  # type: ignore[attr-defined]
    wait_for_log(log, CELERY_READY[kind], process, timeout)
    return process


def worker_options(hostname: str, concurrency: int = 2, queues: str | None = None) -> list[str]:
    """A worker's options as the tests run it: its own hostname, no mingle or gossip."""
    options = [
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
        "--without-mingle",
        "--without-gossip",
    ]
    return options + (["-Q", queues] if queues else [])


def nginx_config(workdir: Path, listen: int, upstream: int) -> Path:
    """A whole nginx.conf (files under `workdir`) around deploy/nginx/tasker.conf, its two
    placeholders filled in: what the proxy tests and bench/holding.py run."""
    root = Path(__file__).resolve().parent.parent
    site = (root / "deploy/nginx/tasker.conf").read_text()
    site = site.replace("TASKER_UPSTREAM", f"127.0.0.1:{upstream}").replace(
        "TASKER_LISTEN", f"127.0.0.1:{listen}"
    )
    temp = workdir / "nginx-temp"
    temp.mkdir(exist_ok=True)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {temp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # The connection figures of the shipped main configuration (deploy/nginx/nginx.conf).
    main = (root / "deploy/nginx/nginx.conf").read_text()
    connections = re.search(r"worker_connections (\d+);", main).group(1)
    files = re.search(r"worker_rlimit_nofile (\d+);", main).group(1)
    config = workdir / "nginx.conf"
    config.write_text(
        f"worker_processes 1;\nworker_rlimit_nofile {files};\npid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/nginx-error.log warn;\nevents {{ worker_connections {connections}; }}\n"
        f"http {{\n    access_log off;\n{temp_paths}\n{site}\n}}\n"
    )
    return config


# A webhook signing secret for the tests (whsec_ and 32 bytes in base64); never a real one.
WEBHOOK_SECRET = "whsec_" + "dGFza2VyLXRlc3Qtd2ViaG9vay1zZWNyZXQtMzJieXQ="


class Receiver:
    """A real HTTP server on 127.0.0.1 receiving webhooks: it records every request and answers
    from a script of (status, headers, body) steps, the last one repeated. It can be stopped and
    started again on the same port (a receiver that is down), and can hold its answers until
    released (a receiver slow enough for a worker to be killed mid-delivery)."""

    def __init__(self, port: int | None = None):
        import threading

        self.port = port or free_port()
        self.requests: list[dict[str, Any]] = []
        self.steps: list[tuple[int, dict[str, str], str]] = [(200, {}, "ok")]
        self.released = threading.Event()
        self.released.set()
        self._lock = threading.Lock()
        self._server: Any = None
        # Until it starts, the port is held by a socket that does not listen: connections to it
        # are refused, and no other server of the run can take it meanwhile.
        self._hold = socket.socket()
        self._hold.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._hold.bind(("127.0.0.1", self.port))

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *steps: tuple[int, dict[str, str], str]) -> None:
        self.steps = list(steps)

    def start(self) -> Receiver:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.requests.append(
                        {
                            "at": time.monotonic(),
                            "method": self.command,
                            "path": self.path,
                            "headers": dict(self.headers),
                            "body": body,
                        }
                    )
                    steps = receiver.steps
                    status, headers, text = steps[min(len(receiver.requests) - 1, len(steps) - 1)]
                receiver.released.wait(60)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                payload = text.encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_PATCH = do_DELETE = do_POST  # http_request's targets too

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._hold.close()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.released.set()
        self._hold.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def got(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The first `count` requests, once that many have come."""
        poll(lambda: len(self.requests) >= count, timeout=timeout, what=f"{count} webhook requests")
        return self.requests[:count]


class StallingReceiver:
    """A webhook receiver that stalls, on 127.0.0.1: `tarpit` answers `Content-Length: 100000`
    and then one byte every `byte_every` seconds; `silent` reads the request and never answers.
    `connections` counts what it accepted."""

    def __init__(self, kind: str, byte_every: float = 2.0):
        self.kind = kind
        self.byte_every = byte_every
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                if self.kind == "tarpit":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                    while not self.stopped.wait(self.byte_every):
                        conn.sendall(b"x")
                else:
                    self.stopped.wait(600)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped.set()
        self.sock.close()


def rss_mb(pid: int) -> float:
    """A process's resident memory, in MB (/proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def unread_stream(port: int, path: str, headers: str = "") -> socket.socket:
    """An event stream on 127.0.0.1:`port` whose client never reads: a 4 KB receive buffer, and
    the request sent; the caller reads (or not) and closes."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
    return sock
