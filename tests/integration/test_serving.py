"""The commands users run: gunicorn, `python run.py --worker`, `python celery_worker.py`, init_db.py."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, child_env
from tests.support import TERMINAL, alive, children_of, free_port, poll, stop_process


def http_ok(url: str) -> bool:
    # gunicorn's master accepts connections before its workers have loaded the app, so a
    # first request may wait: a timeout means "not up yet", like a refused connection.
    try:
        return requests.get(url, timeout=1).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def run_sum_over_http(base: str) -> dict:
    response = requests.post(
        f"{base}/run-task", json={"task_name": "sum", "task_parameters": {"a": 5, "b": 10}}, timeout=5
    )
    assert response.status_code == 200, response.text
    task_id = response.json()["task_uuid"]

    def finished():
        output = requests.get(f"{base}/get-task-output", params={"task_uuid": task_id}, timeout=5).json()
        return output["task_output"] if output["task_output"]["status"] in TERMINAL else None

    return poll(finished, what="the task to finish")


def start(command: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_gunicorn_serves_the_api(stack_env, worker, tmp_path):
    port = free_port()
    env = child_env({**stack_env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"})
    server = start(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "run:app"], env, tmp_path / "g.log"
    )
    try:
        poll(lambda: http_ok(f"http://127.0.0.1:{port}/health"), what="gunicorn to answer")
        assert run_sum_over_http(f"http://127.0.0.1:{port}") == {
            "status": "COMPLETED",
            "result": 15,
            "error": None,
        }
    finally:
        stop_process(server)
    assert server.returncode == 0, (tmp_path / "g.log").read_text()


def worker_processes(pids: set[int]) -> int:
    """How many of `pids` are a Celery worker's processes (its main process and its pool)."""

    def arguments(pid: int) -> list[str]:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return []

    return sum("celery" in arguments(pid) and "worker" in arguments(pid) for pid in pids)


def test_run_py_with_worker_serves_and_stops_everything_on_ctrl_c(stack, tmp_path):
    port = free_port()
    # Its own broker: only its worker can help. WORKER_CONCURRENCY sizes its pool.
    env = child_env({**stack.env, **stack.new_broker(), "WORKER_CONCURRENCY": "3"})
    log = tmp_path / "run.log"
    process = start([sys.executable, "run.py", "--worker", "--port", str(port)], env, log)
    try:
        poll(lambda: http_ok(f"http://127.0.0.1:{port}/health"), what="run.py to answer")
        assert run_sum_over_http(f"http://127.0.0.1:{port}")["result"] == 15
        family = children_of(process.pid)
        assert family, "run.py --worker started no worker"
        poll(
            lambda: worker_processes(children_of(process.pid)) == 5,
            what="the tasks' worker and its 3 pool processes, and the deliveries' threaded worker",
        )
    finally:
        stop_process(process, signal.SIGINT)
    assert process.returncode == 0, log.read_text()
    left = {pid for pid in family if alive(pid)}
    assert not left, f"processes left behind: {left}"


@pytest.mark.parametrize("entry", [["run.py"], ["celery_worker.py"], ["init_db.py"]])
def test_a_bad_setting_stops_start_up_naming_it(stack_env, entry):
    env = child_env({**stack_env, "CACHE_TTL_SECONDS": "an hour"})
    result = subprocess.run(
        [sys.executable, *entry], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "CACHE_TTL_SECONDS must be an integer, got 'an hour'" in result.stderr


def test_init_db_is_safe_to_run_twice(stack_env):
    env = child_env(stack_env)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "init_db.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert "schema is up to date" in result.stdout


def test_open_mode_on_a_network_address_is_refused_unless_asked_for(stack_env, tmp_path):
    port = free_port()
    env = child_env({**stack_env, "GUNICORN_BIND": f"0.0.0.0:{port}", "WEB_CONCURRENCY": "1"})
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "run:app"]
    refused = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "set AUTH_MODE=open to mean it" in refused.stderr
    run_py = subprocess.run(
        [sys.executable, "run.py", "--no-worker", "--host", "0.0.0.0", "--port", str(port)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run_py.returncode == 2 and "set AUTH_MODE=open to mean it" in run_py.stderr
    log = tmp_path / "g.log"
    server = start(command, {**env, "AUTH_MODE": "open"}, log)
    try:
        poll(lambda: http_ok(f"http://127.0.0.1:{port}/health"), what="gunicorn to answer")
        assert "WARNING: AUTH_MODE=open on 0.0.0.0" in log.read_text()
    finally:
        stop_process(server)
