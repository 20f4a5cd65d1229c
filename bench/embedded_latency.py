"""Submit-to-COMPLETED latency of a sum task on the embedded stack (SQLite + filesystem broker).

Starts `python run.py` with an empty environment (rate limits off) and a temporary data folder,
submits N sum tasks one after another over HTTP, polls each until COMPLETED,
and prints the median and p95. Usage: python bench/embedded_latency.py [N]
"""

from __future__ import annotations

import json
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
POLL_SECONDS = 0.005


def call(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(base: str, process: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("run.py exited before answering")
        try:
            call(f"{base}/health")
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("run.py did not answer within 60 s")


def one_task(base: str, n: int) -> float:
    start = time.perf_counter()
    task_id = call(f"{base}/run-task", {"task_name": "sum", "task_parameters": {"a": n, "b": 1}})["task_uuid"]
    while True:
        status = call(f"{base}/get-task-output?task_uuid={task_id}")["task_output"]["status"]
        if status == "COMPLETED":
            return time.perf_counter() - start
        if status == "FAILED":
            sys.exit(f"task {task_id} failed")
        time.sleep(POLL_SECONDS)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=ROOT,
            # Polling every 5 ms is 200 reads/s from one address: over the default read limit,
            # which this latency figure is not about.
            env={"TASKER_DATA_DIR": data_dir, "LOG_LEVEL": "WARNING", "RATE_LIMIT_ENABLED": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until_up(base, process, time.monotonic() + 60)
            one_task(base, 0)  # warm-up: the worker's first task opens its connections
            latencies = sorted(one_task(base, n) for n in range(count))
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(
        f"embedded stack, sum task submit-to-COMPLETED over {count} tasks: "
        f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
