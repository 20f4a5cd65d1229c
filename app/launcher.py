"""`python run.py`: the API on :5000, optionally with a Celery worker beside it, stopped together."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from types import FrameType

from flask import Flask

logger = logging.getLogger("tasker.run")
WORKER_COMMAND = [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker", "--loglevel=INFO"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the Tasker API (and optionally a worker).")
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5000")))
    parser.add_argument("--worker", action="store_true", help="also run a Celery worker")
    return parser.parse_args(argv)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _watch(worker: subprocess.Popen, stopping: threading.Event) -> None:
    code = worker.wait()
    if not stopping.is_set():
        logger.error("the Celery worker exited unexpectedly (exit code %s); stopping Tasker", code)
        os.kill(os.getpid(), signal.SIGTERM)


def serve(app: Flask, argv: list[str]) -> int:
    args = parse_args(argv)
    # A shell that starts us in the background ignores SIGINT; Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    stopping = threading.Event()
    worker = subprocess.Popen(WORKER_COMMAND) if args.worker else None
    if worker is not None:
        threading.Thread(target=_watch, args=(worker, stopping), daemon=True).start()
    print(f"Tasker API on http://{args.host}:{args.port} (worker: {'yes' if worker else 'no'})", flush=True)
    try:
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        if worker is not None:
            _stop(worker)
    return 0 if worker is None or worker.returncode in (0, -signal.SIGTERM) else 1


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        logger.error("the worker did not stop within 30 s; killing it")
        process.kill()
        process.wait()
