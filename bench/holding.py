"""Can clients hold the API's threads? /health latency while some clients long-poll or drip headers.

Tasker runs under gunicorn exactly as in production (gunicorn.conf.py: 4 processes x 8 threads)
on a throwaway PostgreSQL database and a private redis-server. While each attack runs, one probe
at a time asks GET /health on a new connection (as a load balancer does), for SECONDS; the line
printed per case is p50, p99 and max of those probes and how many took over 5 s (timeouts).

- long polls: WAITERS clients GET /api/v1/tasks/<id>?wait=30 on a task that stays SCHEDULED,
  each asking again as soon as its answer comes, first with the bound lifted
  (WAIT_MAX_CONCURRENT=1000, as before the bound existed), then with the default bound of 4.
- slowloris: SLOW connections each send a request head one header line every 4 s, first straight
  at gunicorn, then at nginx running deploy/nginx/tasker.conf in front of it.
- flood (with --flood N): N request heads from one address that never finish, held at N for
  SECONDS, at nginx; nine /health probes through it meanwhile.

Usage: python bench/holding.py [--seconds 10] [--waiters 64] [--slow 64] [--flood 2100]
"""

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests
from harness import free_port, stack, wait_until

from tests.support import nginx_config

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def probe(url: str, seconds: float) -> str:
    times, timeouts = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        try:
            requests.get(url, timeout=5, headers={"Connection": "close"})
        except requests.RequestException:
            timeouts += 1
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.05)
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return (
        f"/health p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms, max {times[-1]:.0f} ms, "
        f"{len(times)} probes, {timeouts} over 5 s"
    )


def long_polls(base: str, waiters: int, seconds: float) -> str:
    task = requests.post(
        f"{base}/api/v1/tasks",
        json={"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600},
        timeout=5,
    ).json()
    url = f"{base}/api/v1/tasks/{task['id']}?wait=30"
    stop = threading.Event()

    def wait() -> None:
        while not stop.is_set():
            try:
                answer = requests.get(url, timeout=35)
            except requests.RequestException:
                continue
            if "Tasker-Wait" in answer.headers:  # told the server is busy: back off, as asked
                stop.wait(float(answer.headers.get("Retry-After", "1")))

    threads = [threading.Thread(target=wait, daemon=True) for _ in range(waiters)]
    for thread in threads:
        thread.start()
    time.sleep(1)  # let the waits take their threads
    try:
        return probe(f"{base}/health", seconds)
    finally:
        stop.set()


def slowloris(port: int, count: int, seconds: float, url: str) -> str:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
        sockets.append(sock)
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(4):
            for sock in sockets:
                try:
                    sock.sendall(b"X-a: b\r\n")
                except OSError:
                    pass

    threading.Thread(target=drip, daemon=True).start()
    time.sleep(0.5)
    try:
        return probe(url, seconds)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


def flood(port: int, count: int, seconds: float, url: str) -> str:
    """`count` request heads from one address that are never finished, kept at `count` (a head
    nginx cuts off at its timeout is opened again), for `seconds`; nine /health probes meanwhile."""
    stop = threading.Event()
    opened = [0]

    def hold() -> None:
        sockets: list[socket.socket] = []
        while not stop.is_set():
            alive = []
            for sock in sockets:
                try:
                    if sock.recv(1, socket.MSG_DONTWAIT) == b"":
                        sock.close()
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    sock.close()
                    continue
                alive.append(sock)
            sockets = alive
            while len(sockets) < count and not stop.is_set():
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
                except OSError:
                    break
                sockets.append(sock)
                opened[0] += 1
            stop.wait(0.02)
        for sock in sockets:
            sock.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    answered, errors = 0, []
    try:
        for _ in range(9):
            stop.wait(seconds / 9)
            try:
                answered += requests.get(url, timeout=5, headers={"Connection": "close"}).status_code == 200
            except requests.RequestException as exc:
                errors.append(type(exc).__name__)
    finally:
        stop.set()
        holder.join()
    return f"{answered} of 9 /health probes answered ({opened[0]} heads opened; failures: {errors or 'none'})"


def nginx(workdir: Path, listen: int, upstream: int) -> subprocess.Popen:
    config = nginx_config(workdir, listen, upstream)
    process = subprocess.Popen(
        [NGINX, "-c", str(config), "-p", str(workdir), "-g", "daemon off;"], stderr=subprocess.DEVNULL
    )
    wait_until(lambda: _answers(f"http://127.0.0.1:{listen}/health"), 10, "nginx")
    return process


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--waiters", type=int, default=64)
    parser.add_argument("--slow", type=int, default=64)
    parser.add_argument("--flood", type=int, default=0, help="unfinished request heads from one address")
    args = parser.parse_args()
    with stack() as s:
        for label, bound in (("no bound", "1000"), ("bound 4", "4")):
            port = s.gunicorn("run:app", "/health", env={"WAIT_MAX_CONCURRENT": bound})
            result = long_polls(f"http://127.0.0.1:{port}", args.waiters, args.seconds)
            print(f"long polls ({args.waiters} waiting, {label}): {result}", flush=True)
        port = s.gunicorn("run:app", "/health")
        direct = slowloris(port, args.slow, args.seconds, f"http://127.0.0.1:{port}/health")
        print(f"slowloris ({args.slow} connections) straight at gunicorn: {direct}", flush=True)
        if not Path(NGINX).exists():
            print("slowloris behind nginx: skipped (nginx is not installed)")
            return
        front = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="tasker-nginx-"))
        proxy = nginx(workdir, front, port)
        try:
            behind = slowloris(front, args.slow, args.seconds, f"http://127.0.0.1:{front}/health")
            print(f"slowloris ({args.slow} connections) behind nginx: {behind}", flush=True)
            if args.flood:
                flooded = flood(front, args.flood, args.seconds, f"http://127.0.0.1:{front}/health")
                print(f"{args.flood} unfinished heads from one address at nginx: {flooded}", flush=True)
        finally:
            proxy.terminate()
            proxy.wait()
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
