"""An event stream whose client never reads: does the API process grow?

Tasker under gunicorn (1 process) on a throwaway PostgreSQL database and a private redis-server,
no worker. A client opens the list stream (GET /api/v1/events) with a small receive buffer and
never reads from it; then TASKS tasks of about 60 KB each (find_longest_consecutive_letters on a
60,000-letter string, countdown 600, so each is one change) are submitted over HTTP. The API
process's resident memory is read from /proc before and after, and the stream's end is awaited.

Usage: python bench/slow_reader.py [--tasks 1200]
"""

import argparse
import time
from pathlib import Path

import requests
from harness import stack

from tests.support import rss_mb, unread_stream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1200)
    tasks = parser.parse_args().tasks
    with stack() as s:
        port = s.gunicorn("run:app", "/health", env={"WEB_CONCURRENCY": "1"})
        base = f"http://127.0.0.1:{port}"
        master = s.started[-1].pid
        child = int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])
        stream = unread_stream(port, "/api/v1/events")
        session = requests.Session()
        body = {"name": "find_longest_consecutive_letters", "parameters": {"string": "ab" * 30_000}}
        submit = f"{base}/api/v1/tasks"
        session.post(submit, json={**body, "countdown": 600}, timeout=30).raise_for_status()
        time.sleep(1)  # the first change reaches the stream: the baseline includes an open stream
        before = rss_mb(child)
        started = time.monotonic()
        for _ in range(tasks):
            session.post(submit, json={**body, "countdown": 600}, timeout=30).raise_for_status()
        submitted = time.monotonic() - started
        time.sleep(2)  # the last changes reach the stream
        after = rss_mb(child)
        stream.settimeout(5)
        ended = "still open after 30 s of reading"
        closes = time.monotonic() + 30
        try:
            while time.monotonic() < closes:
                if not stream.recv(65536):
                    ended = "closed by the server"
                    break
        except OSError:
            pass
        print(
            f"slow reader: {tasks} tasks of 60 KB in {submitted:.0f} s; API process {before:.0f} -> "
            f"{after:.0f} MB resident ({after - before:+.0f} MB); the stream was {ended}"
        )


if __name__ == "__main__":
    main()
