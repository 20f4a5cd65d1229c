"""`python run.py`: the API on :5000, with the Celery workers (tasks, webhook deliveries) and beat
beside it, stopped together."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from types import FrameType
from typing import Any

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.serving import WSGIRequestHandler

from app.core.broker import broker_class
from app.models.migrate import prepare_database
from config import ConfigError, hide_password
from config.base import check_exposure

logger = logging.getLogger("tasker.run")
CELERY = [sys.executable, "-m", "celery", "-A", "celery_worker.celery"]
COMMANDS = {
    # The tasks' worker (prefork), every queue but `webhooks`; deliveries wait on the network, so
    # they have a threaded worker of their own (WEBHOOK_WORKER_THREADS): a slow receiver never
    # holds a process the tasks need.
    "worker": [*CELERY, "worker", "--exclude-queues=webhooks", "--loglevel=INFO"],
    "webhooks": [
        *CELERY,
        "worker",
        "-Q",
        "webhooks",
        "--pool=threads",
        "--hostname=webhooks@%h",
        "--loglevel=INFO",
    ],
    "beat": [*CELERY, "beat", "--loglevel=INFO"],
}


def parse_args(argv: list[str], config: Mapping[str, Any]) -> argparse.Namespace:
    """The command line; its defaults are the settings HOST and PORT, read as every setting is."""
    parser = argparse.ArgumentParser(
        description="Run the Tasker API, and a Celery worker and beat beside it."
    )
    parser.add_argument(
        "--host",
        default=config["HOST"],
        help="address to listen on (default: 127.0.0.1 in open mode, 0.0.0.0 with API keys)",
    )
    parser.add_argument("--port", type=int, default=config["PORT"])
    parser.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run a Celery worker and Celery beat (default: only with the embedded broker)",
    )
    return parser.parse_args(argv)


def is_embedded_broker(config: Mapping[str, Any]) -> bool:
    return broker_class(config).embedded


def describe_backends(config: Mapping[str, Any]) -> list[str]:
    """One line per backend: what it is and where its data lives."""
    database = config["DATABASE_URL"]
    if database.startswith("sqlite"):
        database = "SQLite " + database.split(":///", 1)[1]
    broker = (
        f"filesystem {config['DATA_DIR']}/broker"
        if is_embedded_broker(config)
        else config["CELERY_BROKER_URL"]
    )
    cache = config["REDIS_URL"] or "in-process"
    return [
        f"database: {hide_password(database)}",
        f"broker:   {hide_password(broker)}",
        f"cache:    {hide_password(cache)}",
    ]


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def serve(app: Flask, argv: list[str]) -> int:
    config = app.config
    args = parse_args(argv, config)
    if args.host is None:
        args.host = "127.0.0.1" if config["AUTH_MODE"] == "open" else "0.0.0.0"
    try:
        warning = check_exposure(config, [args.host])
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    os.umask(0o077)  # the embedded database, broker files and logs: this user's only
    with_worker = args.worker if args.worker is not None else is_embedded_broker(config)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        prepare_database(app.extensions["tasker"].db.engine)
    except SQLAlchemyError as exc:
        print(f"cannot prepare the database: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1
    taken = port_taken(args.host, args.port)
    if taken:  # before the worker and beat start, and before a banner that says all is well
        print(taken, file=sys.stderr)
        return 1
    # A shell that starts us in the background ignores SIGINT; Ctrl-C must still stop us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    children = Children()
    if with_worker:
        for name, command in COMMANDS.items():
            # JSON logs: no banner, so every line is one JSON object.
            quiet = ["--quiet"] if config["LOG_FORMAT"] == "json" else []
            children.start(name, [*CELERY, *quiet, *command[len(CELERY) :]])
    print(banner(config, args, with_worker, warning), flush=True)
    try:
        app.run(host=args.host, port=args.port, threaded=True, use_reloader=False, request_handler=_Handler)
    except KeyboardInterrupt:
        pass
    finally:
        children.stop_all()
    return 1 if children.crashed else 0


def banner(
    config: Mapping[str, Any], args: argparse.Namespace, with_worker: bool, warning: str | None
) -> str:
    """What `make run` prints once everything is started: where it serves and what it runs on."""
    host = "localhost" if args.host in ("0.0.0.0", "::", "127.0.0.1") else args.host
    lines = [f"Tasker on http://{host}:{args.port}", *describe_backends(config)]
    lines.append(
        "workers and beat: running (tasks; webhook deliveries on threads)"
        if with_worker
        else "workers and beat: not started (run them yourself)"
    )
    if config["AUTH_MODE"] == "open":
        lines.append(f"auth:     open (no API keys), listening on {args.host} only")
    else:
        lines.append(
            "auth:     API keys required (create one: .venv/bin/flask --app run keys create --name NAME)"
        )
    if warning:
        lines.append(warning)
    return "\n  ".join(lines)


def port_taken(host: str, port: int) -> str | None:
    """Why the API cannot listen on `host`:`port` (another process holds it), or None."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            return (
                f"cannot listen on {host}:{port} ({exc.strerror}): stop what holds the port, or "
                f"choose another, e.g. PORT={8000 if port != 8000 else 8080} make run"
            )
    return None


class _Handler(WSGIRequestHandler):
    """The development server, naming itself `tasker` once (not Werkzeug's and Python's versions)."""

    def version_string(self) -> str:
        return "tasker"


class Children:
    """The worker and beat processes: a crash is reported and stops Tasker; Ctrl-C stops them all."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.crashed: list[str] = []

    def start(self, name: str, command: list[str]) -> None:
        process = subprocess.Popen(command)
        self.processes[name] = process
        threading.Thread(target=self._watch, args=(name, process), daemon=True).start()

    def _watch(self, name: str, process: subprocess.Popen) -> None:
        code = process.wait()
        if not self.stopping.is_set():
            self.crashed.append(name)
            logger.error("celery %s exited unexpectedly (exit code %s); stopping Tasker", name, code)
            os.kill(os.getpid(), signal.SIGTERM)

    def stop_all(self) -> None:
        self.stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in self.processes.items():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                logger.error("celery %s did not stop within 30 s; killing it", name)
                process.kill()
                process.wait()
