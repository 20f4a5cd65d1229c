"""Metrics and logs across real processes: gunicorn with two workers, a prefork Celery worker,
`python run.py --worker`, a worker serving its own metrics port, and a real Prometheus server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.models.migrate import upgrade
from config import load_config
from tests.conftest import ROOT, build_app, child_env, new_database
from tests.integration import test_query_chatgpt as chatgpt
from tests.integration.test_weather import owm_body, serve
from tests.support import (
    TERMINAL,
    children_of,
    free_port,
    poll,
    start_celery,
    start_gunicorn,
    stop_process,
    worker_options,
)

pytestmark = pytest.mark.integration


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(page: dict, name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


def scrape(url: str, **kwargs: Any) -> dict:
    response = requests.get(url, timeout=5, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return samples(response.text)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def json_lines(path: Path) -> list[dict]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


class Api:
    def __init__(self, base: str, server: subprocess.Popen | None = None):
        self.base = base
        self.server = server

    def processes(self) -> set[int]:
        """gunicorn's worker processes (the master's children)."""
        assert self.server is not None
        return children_of(self.server.pid)

    def submit(self, body: dict, **headers: str) -> dict:
        response = requests.post(f"{self.base}/api/v1/tasks", json=body, headers=headers, timeout=10)
        assert response.status_code == 202, response.text
        return response.json()

    def get(self, path: str) -> dict:
        response = requests.get(f"{self.base}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_terminal(self, ids: list[str]) -> dict[str, dict]:
        def done() -> dict[str, dict] | None:
            tasks = {i: self.get(f"/api/v1/tasks/{i}") for i in ids}
            return tasks if all(t["status"] in TERMINAL for t in tasks.values()) else None

        return poll(done, timeout=60, what="every task to finish")


@contextmanager
def gunicorn(env: dict[str, str], log: Path, workers: int = 2) -> Iterator[Api]:
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)}
    server = start_gunicorn(env, log)
    try:
        poll(lambda: answers(f"http://127.0.0.1:{port}/health"), what="gunicorn to answer")
        yield Api(f"http://127.0.0.1:{port}", server)
    finally:
        stop_process(server)


@pytest.fixture
def own_database(stack, tmp_path) -> Iterator[str]:
    """A database of this test's own: a worker another test killed keeps its heartbeat row fresh
    for three heartbeats, and would be counted in `tasker_workers_online` here."""
    if not stack.embedded:
        with new_database("observed") as url:
            yield url
        return
    (own := tmp_path / "own").mkdir()
    url = load_config("testing", {"TASKER_DATA_DIR": str(own)})["DATABASE_URL"]
    engine = sa.create_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url


@pytest.fixture
def observed_env(stack, own_database, tmp_path) -> dict[str, str]:
    """The stack with a broker and a database of its own, JSON logs, a shared metrics directory,
    fast heartbeats."""
    return child_env(
        {
            **stack.env,
            **stack.new_broker(),
            "DATABASE_URL": own_database,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "WORKER_HEARTBEAT_SECONDS": "1",
        }
    )


def test_counters_histograms_gauges_and_logs_across_processes(stack, observed_env, openai, tmp_path):
    """Two gunicorn processes and a prefork worker (two pool processes) record into one directory;
    the API's /metrics adds them up exactly, and one request id ties the API's and the worker's
    lines for a task together."""
    script = serve(openai, (503, {}, {}), (200, owm_body(), {}))  # weather: one retry, then done
    chatgpt.serve(openai, (200, chatgpt.reply("Hello."), {}))
    prompt = f"PROMPT-{uuid.uuid4().hex} " * 20
    worker_log = tmp_path / "worker.log"
    with gunicorn(observed_env, tmp_path / "gunicorn.log") as api:
        worker = start_celery(
            "worker",
            observed_env,
            worker_log,
            *worker_options(f"obs-{uuid.uuid4().hex[:6]}@%h", concurrency=2),
        )
        try:
            request_id = f"obs-{uuid.uuid4().hex}"
            traced = api.submit(
                {"name": "sum", "parameters": {"a": 1, "b": 2}}, **{"X-Request-ID": request_id}
            )
            sums = [traced["id"]] + [
                api.submit({"name": "sum", "parameters": {"a": i, "b": 1}})["id"] for i in range(4)
            ]
            weather = api.submit({"name": "weather", "parameters": {"city": "London"}})
            asked = api.submit({"name": "query_chatgpt", "parameters": {"prompt": prompt}})
            later = api.submit({"name": "sum", "parameters": {"a": 0, "b": 0}, "countdown": 3600})
            cancel = requests.post(f"{api.base}/api/v1/tasks/{later['id']}/cancel", timeout=5)
            assert cancel.status_code == 200, cancel.text
            tasks = api.wait_terminal([*sums, weather["id"], asked["id"]])
            assert {t["status"] for t in tasks.values()} == {"COMPLETED"}
            assert len(script.calls) == 2

            url = f"{api.base}/metrics"
            page = poll(
                lambda: (
                    p
                    if value(
                        p := scrape(url),
                        "tasker_tasks_finished_total",
                        task_type="sum_two_numbers",
                        status="COMPLETED",
                    )
                    == 5
                    and value(p, "tasker_workers_online") == 1
                    else None
                ),
                what="the worker's figures in /metrics",
            )
            queues = api.get("/api/v1/queues")
            gunicorn_pids = api.processes()
        finally:
            stop_process(worker)

    weather_type = weather["name"]
    # Counters: exactly what was submitted and finished, summed over every process.
    assert value(page, "tasker_tasks_submitted_total", task_type="sum_two_numbers") == 6
    assert value(page, "tasker_tasks_submitted_total", task_type=weather_type) == 1
    assert value(page, "tasker_tasks_finished_total", task_type=weather_type, status="COMPLETED") == 1
    assert value(page, "tasker_tasks_finished_total", task_type="query_chatgpt", status="COMPLETED") == 1
    assert value(page, "tasker_tasks_finished_total", task_type="sum_two_numbers", status="CANCELLED") == 1
    assert value(page, "tasker_task_retries_total", task_type=weather_type) == 1
    # Histograms: one observation per run (the weather task ran twice), one wait per task.
    assert value(page, "tasker_task_run_seconds_count", task_type="sum_two_numbers") == 5
    assert value(page, "tasker_task_run_seconds_count", task_type=weather_type) == 2
    assert value(page, "tasker_task_wait_seconds_count", task_type="sum_two_numbers", queue="default") == 5
    assert value(page, "tasker_task_wait_seconds_count", task_type=weather_type, queue="external_api") == 1
    posts = value(
        page,
        "tasker_http_request_duration_seconds_count",
        method="POST",
        endpoint="/api/v1/tasks",
        status="202",
    )
    assert posts == 8
    assert (
        value(
            page,
            "tasker_http_request_duration_seconds_count",
            method="POST",
            endpoint="/api/v1/tasks/<id:task_id>/cancel",
            status="200",
        )
        == 1
    )
    # Gauges: the same figures as the queue statistics.
    for queue in queues["queues"]:
        assert value(page, "tasker_queue_messages", queue=queue["name"]) == queue["messages_waiting"] == 0
    for status, count in queues["totals"].items():
        assert value(page, "tasker_tasks", status=status) == count
    assert value(page, "tasker_metrics_source_up", source="database") == 1
    # Both gunicorn processes recorded requests, and the page above is their sum (and the pool's).
    files = {path.name for path in (tmp_path / "metrics").glob("*.db")}
    assert len(gunicorn_pids) == 2 and all(f"histogram_{pid}.db" in files for pid in gunicorn_pids), files
    assert len({name.rsplit("_", 1)[1] for name in files}) >= 3, files

    # Logs: JSON objects, and one request id finds the API's line and the worker's for the task.
    api_lines = json_lines(tmp_path / "gunicorn.log")
    assert api_lines and all({"time", "level", "logger", "message"} <= set(line) for line in api_lines)
    access = [x for x in api_lines if x.get("request_id") == request_id and x["logger"] == "tasker.access"]
    assert [(a["logger"], a["method"], a["endpoint"], a["status"]) for a in access] == [
        ("tasker.access", "POST", "/api/v1/tasks", 202)
    ]
    assert access[0]["duration_ms"] > 0
    worker_lines = [line for line in json_lines(worker_log) if line.get("request_id") == request_id]
    assert {line.get("task_id") for line in worker_lines} == {traced["id"]}
    assert any(line["message"].startswith(f"task {traced['id']} started") for line in worker_lines)
    outcome = [line for line in worker_lines if line.get("status") == "COMPLETED"]
    assert len(outcome) == 1 and outcome[0]["task_type"] == "sum_two_numbers"
    assert outcome[0]["queue"] == "default" and outcome[0]["attempt"] == 1 and outcome[0]["duration_ms"] >= 0
    # The retried weather task: its retry and both runs' outcomes carry its fields.
    weather_lines = [line for line in json_lines(worker_log) if line.get("task_id") == weather["id"]]
    assert [line["status"] for line in weather_lines if "status" in line] == ["RETRYING", "COMPLETED"]
    assert [line["attempt"] for line in weather_lines if "status" in line] == [1, 2]
    # The prompt is logged as its length, never as its text, by the API or the worker.
    asking = [
        line
        for line in json_lines(worker_log)
        if line.get("task_id") == asked["id"] and "prompt_chars" in line
    ]
    assert [line["prompt_chars"] for line in asking] == [len(prompt)]
    for log in (worker_log, tmp_path / "gunicorn.log"):
        assert prompt.split()[0] not in log.read_text()


def test_a_worker_on_its_own_host_serves_its_metrics_port(stack, tmp_path):
    """WORKER_METRICS_PORT: the worker's main process serves what its pool processes record."""
    if stack.embedded:
        pytest.skip("one stack is enough: the metrics port does not depend on the backends")
    port = free_port()
    env = child_env(
        {
            **stack.env,
            **stack.new_broker(),
            "WORKER_METRICS_PORT": str(port),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        }
    )
    app = build_app(env)
    client = app.test_client()
    worker = start_celery(
        "worker",
        env,
        tmp_path / "worker.log",
        *worker_options(f"port-{uuid.uuid4().hex[:6]}@%h", concurrency=2),
    )
    try:
        ids = [
            client.post("/api/v1/tasks", json={"name": "sum", "parameters": {"a": i, "b": 1}}).get_json()[
                "id"
            ]
            for i in range(3)
        ]
        poll(
            lambda: (
                value(
                    scrape(f"http://127.0.0.1:{port}/metrics"),
                    "tasker_tasks_finished_total",
                    task_type="sum_two_numbers",
                    status="COMPLETED",
                )
                == 3
            ),
            what="three completions on the worker's metrics port",
        )
        assert all(client.get(f"/api/v1/tasks/{i}").get_json()["status"] == "COMPLETED" for i in ids)
    finally:
        stop_process(worker)
        app.extensions["tasker"].db.dispose()


def prometheus_config(tmp_path: Path, target: str) -> Path:
    """deploy/prometheus/prometheus.yml as compose uses it, pointed at `target`, scraping every second."""
    deploy = ROOT / "deploy" / "prometheus"
    config = yaml.safe_load((deploy / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(deploy / "rules.yml")]
    api = next(job for job in config["scrape_configs"] if job["job_name"] == "tasker-api")
    api.pop("dns_sd_configs")
    api["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [api]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


COMPLETED_SUMS = 'sum(tasker_tasks_finished_total{task_type="sum_two_numbers",status="COMPLETED"})'


def test_a_real_prometheus_reads_the_tasks_back(stack, own_database, tmp_path):
    """`python run.py --worker` (API, worker and beat sharing one metrics directory) scraped by
    Debian's Prometheus with deploy/prometheus/'s config and rules."""
    if stack.embedded:
        pytest.skip("one stack is enough: Prometheus reads the same page on both")
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing (Debian package `prometheus`; .ci/run installs it)")
    api_port, prom_port = free_port(), free_port()
    env = child_env(
        {**stack.env, **stack.new_broker(), "DATABASE_URL": own_database, "WORKER_HEARTBEAT_SECONDS": "1"}
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with (tmp_path / "run.log").open("w") as out:
        tasker = subprocess.Popen(
            [sys.executable, "run.py", "--worker", "--port", str(api_port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    prometheus = None
    try:
        base = f"http://127.0.0.1:{api_port}"
        poll(lambda: answers(f"{base}/health"), what="run.py to answer")
        config = prometheus_config(tmp_path, f"127.0.0.1:{api_port}")
        with (tmp_path / "prometheus.log").open("w") as out:
            prometheus = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        query = f"http://127.0.0.1:{prom_port}/api/v1/query"
        poll(lambda: answers(f"http://127.0.0.1:{prom_port}/-/ready"), what="Prometheus to be ready")
        api = Api(base)
        ids = [api.submit({"name": "sum", "parameters": {"a": i, "b": 2}})["id"] for i in range(4)]
        api.wait_terminal(ids)

        def completed() -> float | None:
            answer = requests.get(
                query,
                params={"query": COMPLETED_SUMS},
                timeout=5,
            ).json()
            result = answer["data"]["result"]
            return float(result[0]["value"][1]) if result and float(result[0]["value"][1]) == 4 else None

        assert poll(completed, timeout=30, what="Prometheus to read 4 completions") == 4
        rules = requests.get(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=5).json()["data"]["groups"]
        names = {rule["name"] for group in rules for rule in group["rules"]}
        assert {"TaskerNoWorkerOnline", "TaskerHousekeepingLate"} <= names

        def both_online() -> bool:  # run.py's workers: the tasks' and the deliveries' (its first
            # heartbeat may reach a scrape after the other's)
            up = requests.get(query, params={"query": "tasker_workers_online"}, timeout=5).json()["data"]
            return bool(up["result"]) and float(up["result"][0]["value"][1]) == 2

        poll(both_online, timeout=45, interval=1.0, what="Prometheus to see both of run.py's workers online")
    finally:
        if prometheus is not None:
            stop_process(prometheus)
        stop_process(tasker, sig=signal.SIGINT)


def test_flower_shows_tasks_behind_basic_auth(stack, tmp_path):
    """`celery -A celery_worker.celery flower`, as docker-compose.yml runs it, with FLOWER_BASIC_AUTH."""
    if stack.embedded:
        pytest.skip("Flower reads task events from the broker; the compose stack is PostgreSQL + Redis")
    port = free_port()
    env = child_env(
        {
            **stack.env,
            **stack.new_broker(),
            "FLOWER_BASIC_AUTH": "ops:flower-test-pass",
            "CELERY_TASK_EVENTS": "true",
        }
    )  # the events on, as docker-compose.yml turns them on for its Flower
    app = build_app(env)
    worker = start_celery(
        "worker", env, tmp_path / "worker.log", *worker_options(f"flower-{uuid.uuid4().hex[:6]}@%h")
    )
    with (tmp_path / "flower.log").open("w") as out:
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "flower", f"--port={port}",
             "--address=127.0.0.1"],  # docker-compose.yml's command, on a free local port
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        auth = ("ops", "flower-test-pass")
        poll(lambda: answers_with(f"{base}/healthcheck"), what="Flower to answer")
        assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401
        client = app.test_client()

        def seen(task_id: str) -> dict | None:
            tasks = requests.get(f"{base}/api/tasks", auth=auth, timeout=5).json()
            task = tasks.get(task_id)
            # Every event seen (received: the name; succeeded: the result), not a half-seen task.
            return task if task and task["state"] == "SUCCESS" and task.get("name") else None

        # Flower answers before its event consumer is connected: a task that ran before that is
        # never shown whole, so submit again until one is.
        task = None
        for _ in range(6):
            body = {"name": "sum", "parameters": {"a": 2, "b": 3}}
            task_id = client.post("/api/v1/tasks", json=body).get_json()["id"]
            try:
                task = poll(lambda t=task_id: seen(t), timeout=5, what="the task in Flower")
                break
            except AssertionError:
                continue
        assert task is not None, "Flower showed none of six tasks"
        assert task["name"] == "tasker.sum_two_numbers" and task["result"] == "5"
        assert client.get(f"/api/v1/tasks/{task_id}").get_json()["status"] == "COMPLETED"
    finally:
        stop_process(flower)
        stop_process(worker)
        app.extensions["tasker"].db.dispose()


def answers_with(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code in (200, 401)
    except (requests.ConnectionError, requests.Timeout):
        return False
