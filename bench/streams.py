"""Do open event streams (SSE) starve the API? /health, submits and CPU with STREAMS streams open.

Tasker runs under gunicorn as in production (gunicorn.conf.py: 4 processes, each with
GUNICORN_THREADS threads for requests plus STREAM_MAX_CONCURRENT for streams) on a throwaway
PostgreSQL database and a private redis-server. No worker runs.

1. Without streams: /health probed one request at a time on new connections (p50, p99), and the
   submit benchmark (wrk, POST /run-task, 16 connections).
2. STREAMS clients open GET /api/v1/tasks/<id>/events on a task that stays SCHEDULED (idle
   streams: only heartbeats flow). The CPU the gunicorn processes use over IDLE seconds is
   read from /proc; then /health and the submit benchmark again, and the ratio.
3. The same with STREAMS list streams (GET /api/v1/events): every submit is now an event that
   each process sends to each of its open streams: the cost of fan-out.

Usage: python bench/streams.py [--seconds 10] [--streams 200] [--idle 10]
"""

import argparse
import os
import select
import socket
import statistics
import threading
import time

import requests
from harness import BODY, stack, wrk

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def probe(url: str, seconds: float) -> tuple[float, float]:
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.perf_counter()
        requests.get(url, timeout=5, headers={"Connection": "close"})
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(0.02)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


class Streams:
    """`count` open SSE connections to `path`, read (and thrown away) by one thread."""

    def __init__(self, port: int, path: str, count: int):
        self.sockets: list[socket.socket] = []
        self.refused = 0
        request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n".encode()
        while len(self.sockets) < count:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(request)
            head = sock.recv(4096)
            if not head.startswith(b"HTTP/1.1 200"):  # that process's streams are all taken: again
                self.refused += 1
                sock.close()
                time.sleep(0.01)
                continue
            sock.setblocking(False)
            self.sockets.append(sock)
        self.bytes = 0
        self.stop = threading.Event()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        poller = select.poll()
        for sock in self.sockets:
            poller.register(sock, select.POLLIN)
        by_fd = {sock.fileno(): sock for sock in self.sockets}
        while not self.stop.is_set():
            for fd, _ in poller.poll(200):
                try:
                    self.bytes += len(by_fd[fd].recv(65536))
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.reader.join()
        for sock in self.sockets:
            sock.close()


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def family(pid: int) -> list[int]:
    children = open(f"/proc/{pid}/task/{pid}/children").read().split()
    return [pid, *map(int, children)]


def measure(base: str, seconds: float) -> tuple[tuple[float, float], object]:
    health = probe(f"{base}/health", seconds)
    load = wrk(f"{base}/run-task", seconds, "POST", BODY)
    return health, load


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10)
    args = parser.parse_args()
    with stack() as s:
        port = s.gunicorn("run:app", "/health", env={"STREAM_HEARTBEAT_SECONDS": "15"})
        base = f"http://127.0.0.1:{port}"
        pids = family(s.started[-1].pid)
        wrk(f"{base}/run-task", min(2, args.seconds), "POST", BODY)  # warm-up
        (h50, h99), before = measure(base, args.seconds)
        print(f"no streams: /health p50 {h50:.1f} ms, p99 {h99:.1f} ms | submit {before}", flush=True)

        task = requests.post(
            f"{base}/api/v1/tasks",
            json={"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600},
            timeout=5,
        ).json()
        for label, path in (
            ("idle task streams", f"/api/v1/tasks/{task['id']}/events"),
            ("list streams", "/api/v1/events"),
        ):
            streams = Streams(port, path, args.streams)
            try:
                time.sleep(1)
                start_cpu, start = cpu_seconds(pids), time.monotonic()
                time.sleep(args.idle)
                share = (cpu_seconds(pids) - start_cpu) / (time.monotonic() - start) * 100
                (h50, h99), during = measure(base, args.seconds)
                ratio = during.requests_per_second / before.requests_per_second
                print(
                    f"{args.streams} {label} ({streams.refused} refused while opening, then retried): "
                    f"idle CPU {share:.1f} % of a core | /health p50 {h50:.1f} ms, p99 {h99:.1f} ms | "
                    f"submit {during} | submit ratio {ratio:.2f} | {streams.bytes} bytes streamed",
                    flush=True,
                )
            finally:
                streams.close()
        (h50, h99), after = measure(base, args.seconds)
        print(
            f"streams closed again: /health p50 {h50:.1f} ms, p99 {h99:.1f} ms | submit {after}", flush=True
        )


if __name__ == "__main__":
    main()
