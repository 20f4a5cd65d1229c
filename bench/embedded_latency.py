"""Submit-to-COMPLETED latency of a sum task on the embedded stack (SQLite + filesystem broker),
and the CPU the idle service uses.

Starts `python run.py` with an empty environment (rate limits off) and a temporary data folder,
submits N sum tasks one after another over HTTP, waits for each to be COMPLETED (a long poll,
`?wait=`, which answers as soon as it is), and prints the median and p95; then leaves the
service idle for IDLE seconds and prints the CPU its processes used, as a share of one core.
Usage: python bench/embedded_latency.py [N] [IDLE]
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def call(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(base: str, process: subprocess.Popen, deadline: float, path: str = "/health") -> None:
    """Until `path` answers 200 (/health: the API is up; /health/ready: a worker answers too)."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("run.py exited before answering")
        try:
            call(f"{base}{path}")
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"run.py did not answer {path} in time")


def one_task(base: str, n: int) -> float:
    start = time.perf_counter()
    task_id = call(f"{base}/api/v1/tasks", {"name": "sum", "parameters": {"a": n, "b": 1}})["id"]
    status = call(f"{base}/api/v1/tasks/{task_id}?wait=10")["status"]
    if status != "COMPLETED":
        sys.exit(f"task {task_id} is {status} after 10 s")
    return time.perf_counter() - start


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of `pid` and every process under it."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    family, frontier = {pid}, {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - family
        family |= frontier
    return sum(times.get(p, 0.0) for p in family)


def idle_share(pid: int, seconds: float) -> float:
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # the service does nothing meanwhile: that is what is measured
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    idle_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=ROOT,
            # Hundreds of requests a second from one address: over the default limits, which this
            # latency figure is not about.
            env={"TASKER_DATA_DIR": data_dir, "LOG_LEVEL": "WARNING", "RATE_LIMIT_ENABLED": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(base, process, time.monotonic() + 60)
            one_task(base, 0)  # warm-up: the worker's first task opens its connections
            latencies = sorted(one_task(base, n) for n in range(count))
            time.sleep(2)  # let the last task's after-work (logs, metrics files) finish
            idle = idle_share(process.pid, idle_seconds)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(
        f"embedded stack, sum task submit-to-COMPLETED over {count} tasks: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; idle for {idle_seconds:g} s: {idle * 100:.1f} % of a core"
    )


if __name__ == "__main__":
    main()
