"""Holding the server: slow clients meet nginx (deploy/nginx/tasker.conf) instead of gunicorn, and
long polls beyond the per-process bound answer at once. Durations are measured in bench/; these
tests assert what must hold: every health probe is answered while the attack goes on."""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import REQUIRE_SERVICES, ROOT, child_env
from tests.support import answers, free_port, nginx_config, poll, stop_process

pytestmark = pytest.mark.integration
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def gunicorn(env: dict[str, str], port: int, log: Path, **settings: str) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "run:app"],
            cwd=ROOT,
            env=child_env({**env, "GUNICORN_BIND": f"127.0.0.1:{port}", **settings}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


class Slowloris:
    """`count` connections that send a request head one header line at a time, forever."""

    def __init__(self, port: int, count: int):
        self.stop = threading.Event()
        self.sockets = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            self.sockets.append(sock)
        self.thread = threading.Thread(target=self.drip, daemon=True)
        self.thread.start()

    def drip(self) -> None:
        while not self.stop.wait(2):  # the attack's pace: one header line every 2 s per connection
            for sock in self.sockets:
                try:
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in self.sockets:
            sock.close()


@contextmanager
def behind_nginx(stack_env, tmp_path, processes: str) -> Iterator[int]:
    """gunicorn (`processes` x 4 threads) behind nginx with deploy/nginx/: yields nginx's port once
    both answer; both are stopped after."""
    if not Path(NGINX).exists():
        message = "nginx is not installed (apt-get install nginx)"
        if REQUIRE_SERVICES:
            pytest.fail(message)
        pytest.skip(message)
    api, front = free_port(), free_port()
    server = gunicorn(stack_env, api, tmp_path / "g.log", WEB_CONCURRENCY=processes, GUNICORN_THREADS="4")
    proxy = subprocess.Popen(
        [NGINX, "-c", str(nginx_config(tmp_path, front, api)), "-p", str(tmp_path), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        poll(lambda: answers(f"http://127.0.0.1:{front}/health"), what="nginx and gunicorn to answer")
        yield front
    finally:
        stop_process(proxy, timeout=10)
        stop_process(server)


def test_behind_nginx_slow_clients_do_not_starve_health(stack_env, tmp_path):
    with behind_nginx(stack_env, tmp_path, "2") as front:
        attack = Slowloris(front, 64)  # twice gunicorn's 8 threads, eight times over
        try:
            for _ in range(20):
                response = requests.get(f"http://127.0.0.1:{front}/health", timeout=2)
                assert response.status_code == 200
                assert response.headers["Server"] == "nginx"  # server_tokens off: no version
            # An event stream passes through unbuffered: its first event arrives while it stays open.
            front_url = f"http://127.0.0.1:{front}"
            body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 600}
            task = requests.post(f"{front_url}/api/v1/tasks", json=body, timeout=5).json()
            events = f"{front_url}/api/v1/tasks/{task['id']}/events"
            with requests.get(events, stream=True, timeout=10) as stream:
                lines = stream.iter_lines(decode_unicode=True)
                assert any(line.startswith("data: ") and '"SCHEDULED"' in line for line in lines)
        finally:
            attack.close()


def test_behind_nginx_a_flood_of_unfinished_heads_from_one_address_starves_nothing(stack_env, tmp_path):
    """3,000 request heads from one address that never finish (more than nginx's stock 1,024 or
    2,048 connections; limit_conn cannot count them): every health probe through the proxy still
    answers, because deploy/nginx/nginx.conf sizes the connections past what one address can open."""
    heads: list[socket.socket] = []
    with behind_nginx(stack_env, tmp_path, "1") as front:
        try:
            for _ in range(3000):
                sock = socket.create_connection(("127.0.0.1", front), timeout=5)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
                heads.append(sock)
            for _ in range(9):
                response = requests.get(
                    f"http://127.0.0.1:{front}/health", timeout=5, headers={"Connection": "close"}
                )
                assert response.status_code == 200
            errors = (tmp_path / "nginx-error.log").read_text()
            assert "worker_connections are not enough" not in errors
        finally:
            for sock in heads:
                sock.close()


@contextmanager
def waiting_server(stack_env, tmp_path, threads: int, bound: int):
    """gunicorn (one process, `threads` threads, `bound` waits) and a task that stays SCHEDULED:
    yields (base URL, port, task id); the server is stopped after."""
    port = free_port()
    server = gunicorn(
        stack_env,
        port,
        tmp_path / "g.log",
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS=str(threads),
        WAIT_MAX_CONCURRENT=str(bound),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: answers(f"{base}/health"), what="gunicorn to answer")
        body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 600}
        task = requests.post(f"{base}/api/v1/tasks", json=body, timeout=5).json()
        yield base, port, task["id"]
    finally:
        stop_process(server)


def test_long_polls_beyond_the_bound_answer_at_once(stack_env, tmp_path):
    """4 waits per process may hold a thread; a fifth answers now with Tasker-Wait, and health answers."""
    with waiting_server(stack_env, tmp_path, threads=8, bound=4) as (base, _, task_id):
        url = f"{base}/api/v1/tasks/{task_id}?wait=20"
        started = threading.Barrier(5)
        results: list[requests.Response] = []

        def wait() -> None:
            started.wait()
            while True:  # a probe may hold a slot for a moment: ask again until this one waits
                response = requests.get(url, timeout=30)
                if "Tasker-Wait" not in response.headers:
                    results.append(response)
                    return

        waiters = [threading.Thread(target=wait, daemon=True) for _ in range(4)]
        for thread in waiters:
            thread.start()
        started.wait()
        # The four take their slots; from then on another wait is answered at once, marked.
        probe = url.replace("wait=20", "wait=0.5")  # if it finds a slot free, it gives it back soon
        skipped = poll(
            lambda: (r := requests.get(probe, timeout=5)).headers.get("Tasker-Wait") and r,
            what="a wait beyond the bound to be answered at once",
        )
        assert skipped.status_code == 200 and skipped.json()["status"] == "SCHEDULED"
        assert skipped.headers["Tasker-Wait"].startswith("skipped; busy")
        assert skipped.headers["Retry-After"] == "1"
        assert requests.get(f"{base}/health", timeout=2).status_code == 200
        # Cancelling ends the four waits with the terminal state.
        assert requests.post(f"{base}/api/v1/tasks/{task_id}/cancel", timeout=5).status_code == 200
        for thread in waiters:
            thread.join(timeout=30)
        assert [r.json()["status"] for r in results] == ["CANCELLED"] * 4


def test_a_wait_ends_when_its_client_goes(stack_env, tmp_path):
    with waiting_server(stack_env, tmp_path, threads=2, bound=1) as (base, port, task_id):
        path = f"/api/v1/tasks/{task_id}?wait=30"
        probe = f"{base}{path.replace('wait=30', 'wait=0.2')}"  # gives a slot it finds back soon
        held: list[socket.socket] = []

        def hold() -> socket.socket:
            sock = socket.create_connection(("127.0.0.1", port))
            held.append(sock)
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            return sock

        def slot_taken() -> bool:
            # A probe may take the slot first; then the held request is answered at once
            # (its socket turns readable) and is sent again on a new connection.
            if select.select([held[-1]], [], [], 0)[0]:
                held[-1].close()
                hold()
            return bool(requests.get(probe, timeout=5).headers.get("Tasker-Wait"))

        try:
            hold()
            # The one slot is taken: another wait answers at once...
            poll(slot_taken, what="the slot to be taken")
            held[-1].close()  # ...until the client that holds it hangs up; then the slot is free again.
            poll(
                lambda: "Tasker-Wait" not in requests.get(probe, timeout=5).headers,
                what="the wait of a gone client to end",
                timeout=10,  # it notices within CHECK_SECONDS (0.5 s), not after its 30 s
            )
        finally:
            for sock in held:
                sock.close()
