"""How long Ctrl-C takes to stop `make run` when nothing runs: the API, and each child it started
(the tasks' worker, the webhooks' worker, beat), timed from the SIGINT to its exit.

Starts `python run.py --worker` with an empty environment and a temporary data folder, waits until
it is ready and then IDLE seconds more, sends SIGINT as a terminal's Ctrl-C does, and prints when
each process was gone. Repeats ROUNDS times. Usage: python bench/stop.py [ROUNDS] [IDLE]
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_latency import ROOT, free_port, wait_until_up

CHILDREN = {"--exclude-queues=webhooks": "worker", "-Q webhooks": "webhooks", " beat ": "beat"}


def children(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_text().replace("\0", " ")
            except OSError:
                continue
            if parent == pid:
                found[int(entry.name)] = next((name for key, name in CHILDREN.items() if key in command), "?")
    return found


def gone(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def one_round(idle: float) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"TASKER_DATA_DIR": data_dir, "LOG_LEVEL": "WARNING", "PATH": os.environ["PATH"]}
        process = subprocess.Popen([sys.executable, "run.py", "--worker", "--port", str(port)], cwd=ROOT,
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wait_until_up(f"http://127.0.0.1:{port}", process, time.monotonic() + 90, "/health/ready")
        time.sleep(idle)  # idle, as a developer's make run is before Ctrl-C
        named = children(process.pid)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        took: dict[str, float] = {}
        while len(took) < len(named) or process.poll() is None:
            for pid, name in named.items():
                if name not in took and gone(pid):
                    took[name] = time.monotonic() - started
            time.sleep(0.02)  # the next look at which are gone
        process.wait(timeout=60)
        took["all"] = time.monotonic() - started
    return took


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    idle = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    results = [one_round(idle) for _ in range(rounds)]
    parts = ", ".join(
        f"{name} {statistics.median(r[name] for r in results):.2f} s"
        for name in ("beat", "webhooks", "worker", "all")
        if all(name in r for r in results)
    )
    worst = max(r["all"] for r in results)
    print(f"Ctrl-C on an idle make run, median of {rounds}: {parts}; slowest stop {worst:.2f} s")


if __name__ == "__main__":
    main()
