"""`python run.py` as a newcomer runs it: a copy of the project, an empty environment, no servers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.support import TERMINAL, alive, children_of, free_port, poll, stop_process

TASKS = [
    ("sum_two_numbers", {"a": 5, "b": 10}, {"status": "COMPLETED", "result": 15, "error": None}),
    (
        "find_longest_consecutive_letters",
        {"string": "aaabbccccdd"},
        {"status": "COMPLETED", "result": 4, "error": None},
    ),
    (
        "query_chatgpt",
        {"prompt": "Tell me a joke."},
        {
            "status": "FAILED",
            "result": None,
            "error": "OPENAI_API_KEY is not set on the worker, so query_chatgpt cannot run.",
        },
    ),
]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "instance", "__pycache__", ".pytest_cache", ".ruff_cache", "logs"
)


class Tasker:
    """One `python run.py` process in the copy, with nothing in its environment."""

    def __init__(self, project: Path, port: int, *args: str):
        self.base = f"http://127.0.0.1:{port}"
        self.log = project / f"run-{len(list(project.glob('run-*.log')))}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "run.py", "--port", str(port), *args],
                cwd=project,
                env={},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        poll(self._up, timeout=30, what="run.py to answer")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"run.py exited:\n{self.log.read_text()[-3000:]}")
        try:
            return requests.get(f"{self.base}/health", timeout=1).ok
        except (requests.ConnectionError, requests.Timeout):
            return False

    def submit(self, name: str, parameters: dict) -> str:
        body = {"task_name": name, "task_parameters": parameters}
        response = requests.post(f"{self.base}/run-task", json=body, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["task_uuid"]

    def output(self, task_id: str) -> dict:
        response = requests.get(f"{self.base}/get-task-output", params={"task_uuid": task_id}, timeout=5)
        assert response.status_code == 200, response.text
        return response.json()["task_output"]

    def finished(self, task_id: str) -> dict:
        return poll(lambda: (o := self.output(task_id))["status"] in TERMINAL and o, what=f"task {task_id}")

    def stop(self, sig: int = signal.SIGINT) -> None:
        family = children_of(self.process.pid)
        stop_process(self.process, sig, timeout=60)
        assert self.process.returncode == 0, self.log.read_text()[-3000:]
        left = {pid for pid in family if alive(pid)}
        assert not left, f"processes left behind: {left}"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "tasker"
    shutil.copytree(ROOT, copy, ignore=IGNORED)
    return copy


def test_run_py_with_no_settings_runs_everything_and_keeps_it_across_restarts(project):
    port = free_port()
    tasker = Tasker(project, port)
    banner = tasker.log.read_text()
    assert f"Tasker on http://localhost:{port}" in banner
    assert f"database: SQLite {project / 'instance' / 'tasker.db'}" in banner
    assert f"broker:   filesystem {project / 'instance' / 'broker'}" in banner
    assert (
        "cache:    in-process" in banner
        and "workers and beat: running (tasks; webhook deliveries on threads)" in banner
    )
    answer = requests.get(f"{tasker.base}/health", timeout=5)
    assert answer.raw.headers.getlist("Server") == ["tasker"]  # once, with no versions
    ids = [tasker.submit(name, parameters) for name, parameters, _ in TASKS]
    for task_id, (_, _, expected) in zip(ids, TASKS, strict=True):
        assert tasker.finished(task_id) == expected
    assert len(children_of(tasker.process.pid)) >= 3  # the two workers, the pool and beat
    tasker.stop(signal.SIGINT)

    # Without a worker a task waits in the broker's folder, and the earlier results are still there.
    tasker = Tasker(project, port, "--no-worker")
    assert "workers and beat: not started" in tasker.log.read_text()
    for task_id, (_, _, expected) in zip(ids, TASKS, strict=True):
        assert tasker.output(task_id) == expected
    queued = tasker.submit("sum", {"a": 1, "b": 2})
    assert tasker.output(queued)["status"] == "PENDING"
    tasker.stop(signal.SIGTERM)

    tasker = Tasker(project, port)
    assert tasker.finished(queued) == {"status": "COMPLETED", "result": 3, "error": None}
    tasker.stop(signal.SIGINT)


def test_a_crashed_worker_is_reported_and_stops_tasker(project):
    tasker = Tasker(project, free_port())
    worker = poll(lambda: _worker_pid(tasker.process.pid), what="the worker process")
    family = children_of(tasker.process.pid)
    subprocess.run(["kill", "-9", str(worker)], check=True)
    tasker.process.wait(timeout=60)
    assert tasker.process.returncode == 1
    assert "celery worker exited unexpectedly (exit code -9); stopping Tasker" in tasker.log.read_text()
    poll(lambda: not {pid for pid in family if alive(pid)}, what="beat and the orphaned pool to exit")


def _worker_pid(parent: int) -> int | None:
    for pid in children_of(parent):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        tasks_worker = b"worker" in cmdline and b"--exclude-queues=webhooks" in cmdline  # not the deliveries'
        if tasks_worker and Path(f"/proc/{pid}/stat").read_text().split()[3] == str(parent):
            return pid
    return None


def test_a_port_in_use_stops_run_py_before_anything_starts_and_says_how_to_choose_another(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "run.py", "--port", str(port)], cwd=ROOT, capture_output=True, text=True,
            env={"TASKER_DATA_DIR": str(tmp_path), "PATH": os.environ["PATH"]}, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "PORT=8000 make run" in done.stderr
    assert "workers and beat" not in done.stdout  # nothing said to be running, nothing started
