"""Where a gunicorn worker's CPU goes under load: py-spy on Tasker while wrk drives it.

Starts Tasker as bench/submit.py and bench/read.py do (gunicorn.conf.py, 4 processes, a
throwaway PostgreSQL database, a private redis-server), runs wrk at 16 connections on one
endpoint for SECONDS while py-spy samples every gunicorn process, and prints the functions
that hold the most samples: inclusive (the function or anything it calls) and self.

With --app bench.ceiling_app:app the submit is profiled without its write (see submit.py --ceiling).

Usage: python bench/profile.py [--endpoint submit|submit-v1|read|read-cached] [--seconds 10]
                               [--top 30] [--gil] [--app run:app]
Needs py-spy (pip install py-spy) and ptrace rights (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections import Counter
from pathlib import Path

from harness import BODY, SUBMITS, stack, wrk

FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^)]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`function (path/to/module.py:12)` as `module.py:function`, so lines of one function add up."""
    match = FRAME.match(frame)
    if match is None:
        return frame
    return f"{Path(match['file']).name}:{match['function']}"


def summarise(raw: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text:
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack_text.split(";") if "(" in f]
        if not frames:
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    lines = [f"{total} samples of active threads in the gunicorn processes", "", "inclusive:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def cache_output(env: dict[str, str], task_id: str) -> None:
    import uuid

    import redis

    from app.core.cache_manager import CacheManager

    output = {"status": "COMPLETED", "result": 3, "error": None, "progress": 100, "progress_message": None}
    CacheManager(redis.Redis.from_url(env["REDIS_URL"])).set_output(uuid.UUID(task_id), "default", output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--endpoint", choices=["submit", "submit-v1", "read", "read-cached"], default="submit"
    )
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--gil", action="store_true", help="only threads holding the GIL")
    parser.add_argument("--app", default="run:app", help="the WSGI app gunicorn serves")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    with stack() as s:
        port = s.gunicorn(args.app, "/health")
        base = f"http://127.0.0.1:{port}"
        if args.endpoint in ("submit", "submit-v1"):
            path, body = SUBMITS["v1" if args.endpoint == "submit-v1" else "run-task"]
            url, method = f"{base}{path}", "POST"
        else:  # a task that stays PENDING (no worker runs): PostgreSQL, unless its output is cached
            request = urllib.request.Request(
                f"{base}/run-task", BODY.encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                task_id = json.load(response)["task_uuid"]
            url, method, body = f"{base}/get-task-output?task_uuid={task_id}", "GET", None
            if args.endpoint == "read-cached":  # what a worker's success callback would cache
                cache_output(s.env, task_id)
        wrk(url, 2, method, body)  # warm-up
        master = s.started[-1].pid
        raw = Path(tempfile.mkstemp(suffix=".txt")[1])
        record = [py_spy, "record", "--subprocesses", "--nonblocking", "-r", "200", "-f", "raw"]
        record += ["-d", str(round(args.seconds)), "-o", str(raw), "-p", str(master)]
        record += ["--gil"] if args.gil else []
        sampler = threading.Thread(target=subprocess.run, args=(record,), kwargs={"capture_output": True})
        sampler.start()
        load = wrk(url, args.seconds, method, body)
        sampler.join()
    print(f"{args.endpoint} under py-spy: {load}")
    print(summarise(raw, args.top))
    raw.unlink()


if __name__ == "__main__":
    main()
