"""docker-compose.yml run as written, with the Dockerfile's image: what a user of `docker compose` gets.

The Docker compose section of docs/operating.md is run block by block in one shell, as a user
would type it, and each output compared with the one it shows. Between those steps the tests drive
the stack further, in order: every task type through the proxy, an event stream, a webhook,
Prometheus and Flower, a worker restarted mid-task, down and up again (nothing lost), down -v
(nothing left); then the RabbitMQ override once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from standardwebhooks import Webhook

from tests.containers import images
from tests.containers.conftest import FIGURES, Upstreams, fill_env, write_tasker_env
from tests.containers.engine import Compose, HealthTicker
from tests.containers.readme import PAGE, Block, Shell, normalised, section_blocks
from tests.support import ROOT, poll

API = "http://127.0.0.1:5000"
SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "web",
    "proxy",
    "worker",
    "webhooks",
    "beat",
    "flower",
    "prometheus",
}
ONE_SHOT = {"migrate"}
# The section's blocks, in order: copy .env; up; ps; a key and a task; down and up; the task again;
# down -v; the RabbitMQ override.
BLOCKS = section_blocks(ROOT / PAGE)
assert len(BLOCKS) == 8, f"{PAGE}'s Docker compose section has {len(BLOCKS)} bash blocks; these tests run 8"
COPY_ENV, UP, PS, FIRST_TASK, DOWN_UP, RESULT, REMOVE, RABBITMQ = BLOCKS


@dataclass
class Stack:
    compose: Compose
    shell: Shell
    upstreams: Upstreams
    logs: Path
    env: dict[str, str] = field(default_factory=dict)
    key: str = ""
    tasks: dict[str, dict] = field(default_factory=dict)
    session: requests.Session = field(default_factory=requests.Session)

    def save_logs(self, when: str) -> None:
        """The containers' output, kept with the run's logs (every *.log there is searched for secrets)."""
        logs = self.compose.run("logs", "--no-color", "--timestamps", check=False)
        (self.logs / f"compose-{self.compose.project}-{when}.log").write_text(logs.stdout + logs.stderr)

    def run_block(self, block: Block, timeout: float = 300) -> str:
        """One block of the page, typed into the stack's shell; its output must be the one shown."""
        output = self.shell.run(block.commands, timeout)
        if block.output is not None:
            assert normalised(output) == normalised(block.output), (
                f"{PAGE} shows:\n{block.output}\ngot:\n{output}"
            )
        return output

    def api(self) -> requests.Session:
        """One session per stack (its connections reused), carrying the current key."""
        self.session.headers["Authorization"] = f"Bearer {self.key}"
        return self.session


def wait_until_up(compose: Compose, services: set[str], timeout: float = 180) -> list[dict]:
    """Every service running (healthy where it has a check) and every one-shot exited 0."""

    def up() -> list[dict] | None:
        found = {record["Service"]: record for record in compose.containers()}
        for name in services:
            record = found.get(name)
            if record is None:
                return None
            if name in ONE_SHOT:
                if record["State"] != "exited" or record.get("ExitCode") != 0:
                    return None
            elif record["State"] != "running" or record.get("Health") not in ("", "healthy"):
                return None
        return list(found.values())

    return poll(up, timeout, interval=1.0, what=f"{sorted(services)} up")


def submit(stack: Stack, name: str, parameters: dict, **extra) -> dict:
    response = stack.api().post(f"{API}/api/v1/tasks", json={"name": name, "parameters": parameters, **extra})
    assert response.status_code == 202, response.text
    return response.json()


def finished(stack: Stack, task_id: str, timeout: float = 90) -> dict:
    """The task once terminal, waited for with ?wait= (the API's long poll) under a deadline."""

    def read() -> dict | None:
        body = stack.api().get(f"{API}/api/v1/tasks/{task_id}?wait=10", timeout=20).json()
        return body if body["status"] in ("COMPLETED", "FAILED", "CANCELLED") else None

    return poll(read, timeout, interval=0.1, what=f"task {task_id} to finish")


@contextmanager
def running(engine, project: Path, upstreams: Upstreams, logs: Path, name: str, files=()) -> Iterator[Stack]:
    """A compose project in the project's folder, with its shell, its health checks run, and
    everything of it removed at the end, whatever happened."""
    compose = Compose(project, name, engine, files)
    leftovers = compose.podman("ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={name}")
    assert not leftovers.stdout.strip(), f"containers of a compose project {name!r} exist already"
    shell = Shell(project, {**engine, "COMPOSE_PROJECT_NAME": name})
    stack = Stack(compose, shell, upstreams, logs)
    with HealthTicker(engine, name):
        try:
            yield stack
        finally:
            stack.save_logs("end")
            compose.run("down", "-v", "--timeout", "5", check=False)
            shell.close()
            stack.session.close()


@pytest.fixture(scope="module")
def stack(engine, project, upstreams, tmp_path_factory) -> Iterator[Stack]:
    started = time.monotonic()
    images.build_tasker(project)
    FIGURES["tasker image built in"] = f"{time.monotonic() - started:.0f} s"
    with running(engine, project, upstreams, tmp_path_factory.getbasetemp(), "tasker-ct") as made:
        yield made


def test_up_starts_every_service_as_a_non_root_user_on_a_read_only_root(stack):
    stack.run_block(COPY_ENV)
    stack.env = fill_env(stack.compose.folder)
    write_tasker_env(stack.compose.folder, stack.upstreams)
    started = time.monotonic()
    stack.run_block(UP)
    wait_until_up(stack.compose, SERVICES)
    FIGURES["docker compose up -d --build, every service up, in"] = f"{time.monotonic() - started:.0f} s"
    stack.run_block(PS)
    first_task_runs(stack)
    for service in ("web", "worker", "webhooks", "beat", "flower"):
        assert stack.compose.run("exec", service, "id", "-u").stdout.strip() == "10001"
    # Even its own data directory: the root filesystem is read-only; /tmp is a tmpfs.
    written = stack.compose.run("exec", "web", "touch", "/var/lib/tasker/probe", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr, written
    stack.compose.run("exec", "web", "touch", "/tmp/probe")
    size = stack.compose.podman("image", "inspect", "tasker:latest", "--format", "{{.Size}}").stdout
    base = stack.compose.podman("image", "inspect", images.BASE, "--format", "{{.Size}}").stdout
    FIGURES["image tasker:latest"] = (
        f"{int(size) / 1e6:.0f} MB ({(int(size) - int(base)) / 1e6:.0f} MB over its base)"
    )


def first_task_runs(stack: Stack) -> None:
    """Probe tasks (a key of their own) until one completes, before the tests' own tasks. Seen here
    about once in ten fresh starts: podman's DNS (aardvark-dns, for a just-made network) answered
    nothing for tens of seconds, and a worker child's first database connection waited in the name
    lookup (py-spy: in psycopg2.connect; libpq's connect_timeout does not bound it) past the task's
    hard limit, so that task FAILED. What the tests check comes after the network answers."""
    made = stack.compose.run(
        "exec", "-T", "web", "flask", "--app", "run", "keys", "create", "--name", "probe"
    )
    probe = Stack(stack.compose, stack.shell, stack.upstreams, stack.logs, key=made.stdout.strip())
    started = time.monotonic()

    def completes() -> bool:
        task = submit(probe, "sum_two_numbers", {"a": 0, "b": 0})
        return finished(probe, task["id"], timeout=90)["status"] == "COMPLETED"

    poll(completes, 180, interval=0.1, what="a probe task to complete")
    FIGURES[f"{stack.compose.project}: first task after an up, submit to COMPLETED"] = (
        f"{time.monotonic() - started:.1f} s"
    )
    probe.session.close()


def test_the_readme_makes_a_key_and_runs_a_task(stack):
    output = stack.run_block(FIRST_TASK)
    stack.key = stack.shell.value("KEY")
    assert stack.key.startswith("tsk_")
    stack.env["WEBHOOK_SECRET"] = output.split("webhook signing secret of 'admin': ")[1].split()[0]
    stack.tasks["readme"] = json.loads(output.splitlines()[-1])


def test_every_task_type_runs_through_the_proxy(stack):
    assert requests.get(f"{API}/api/v1/tasks").status_code == 401  # keys mode: no key, no answer
    cases = {
        "sum_two_numbers": ({"a": 2, "b": 3}, 5),
        "find_longest_consecutive_letters": ({"string": "aaabbccccdd"}, 4),
        "query_chatgpt": ({"prompt": "Tell me a joke."}, "re: Tell me a joke."),
        "weather": ({"city": "London"}, {"city": "London", "temperature": 11.3}),
        "process_data": ({"duration_seconds": 1, "record_count": 4}, {"records_processed": 4}),
    }
    submitted = {name: submit(stack, name, parameters)["id"] for name, (parameters, _) in cases.items()}
    for name, task_id in submitted.items():
        task = finished(stack, task_id)
        expected = cases[name][1]
        assert task["status"] == "COMPLETED", task
        if isinstance(expected, dict):
            assert expected.items() <= task["result"].items(), task
        else:
            assert task["result"] == expected, task
        stack.tasks[name] = task


def test_an_event_stream_through_the_proxy_runs_to_the_terminal_event(stack):
    task = submit(stack, "process_data", {"duration_seconds": 2, "record_count": 4})
    events = []
    with stack.api().get(f"{API}/api/v1/tasks/{task['id']}/events", stream=True, timeout=30) as response:
        assert response.status_code == 200 and response.headers["Content-Type"].startswith(
            "text/event-stream"
        )
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "COMPLETED" and events[-1]["progress"] == 100, events[-1]
    assert len(events) >= 3  # the task as it was, its progress, its end: each arrived as it happened
    stack.tasks["stream"] = events[-1]


def test_a_webhook_reaches_a_receiver_on_the_host_signed(stack):
    hook = {"url": f"{stack.upstreams.base}/hook", "events": ["completed"]}
    task = submit(stack, "sum_two_numbers", {"a": 20, "b": 22}, webhook=hook)
    delivery = poll(lambda: stack.upstreams.received, 60, interval=0.1, what="the webhook")[0]
    payload = Webhook(stack.env["WEBHOOK_SECRET"]).verify(delivery["body"], delivery["headers"])
    assert payload["type"] == "task.completed" and payload["task"]["id"] == task["id"], payload
    assert payload["task"]["result"] == 42


def test_prometheus_scrapes_the_api_and_the_worker(stack):
    def scraped() -> dict | None:
        answer = requests.get(
            "http://127.0.0.1:9090/api/v1/query",
            params={"query": "sum by (job) (tasker_tasks_finished_total)"},
        ).json()
        found = {series["metric"]["job"]: float(series["value"][1]) for series in answer["data"]["result"]}
        return found if found.get("tasker-worker", 0) >= len(stack.tasks) else None

    # Every task so far, counted by the worker, in Prometheus after a scrape (every 15 s); both
    # targets up (the API's first scrape may come after the worker's).
    poll(scraped, 60, interval=1.0, what="Prometheus to have the worker's count of the finished tasks")

    def targets_up() -> bool:
        targets = requests.get("http://127.0.0.1:9090/api/v1/targets").json()["data"]["activeTargets"]
        jobs = sorted(t["labels"]["job"] for t in targets if t["health"] == "up")
        # The API; the tasks' worker, the deliveries' worker and beat (the recovery sweep's endings).
        return jobs == ["tasker-api"] + ["tasker-worker"] * 3

    poll(targets_up, 60, interval=1.0, what="Prometheus to scrape the API, both workers and beat")


def test_flower_asks_for_its_password_and_lists_the_tasks(stack):
    assert requests.get("http://127.0.0.1:5555/api/tasks").status_code == 401
    auth = ("ops", stack.env["FLOWER_PASSWORD"])
    task_id = stack.tasks["sum_two_numbers"]["id"]

    def listed() -> dict | None:
        answer = requests.get("http://127.0.0.1:5555/api/tasks", auth=auth)
        return answer.json() if answer.ok and task_id in answer.json() else None

    assert poll(listed, 30, interval=0.5, what="Flower to list the task")[task_id]["state"] == "SUCCESS"


def test_a_task_running_when_the_worker_restarts_completes(stack):
    task = submit(stack, "process_data", {"duration_seconds": 4, "record_count": 4})
    poll(
        lambda: stack.api().get(f"{API}/api/v1/tasks/{task['id']}").json()["status"] == "STARTED",
        30, interval=0.1, what="the task to start",
    )  # fmt: skip
    # --timeout as the compose file's stop_grace_period: Docker applies that by itself, podman 4.3's
    # API kills at once on a restart without one (the sweep then runs the task again, as after a crash).
    stack.compose.run("restart", "--timeout", "60", "worker", timeout=120)
    done = finished(stack, task["id"], timeout=120)
    assert done["status"] == "COMPLETED" and done["result"]["records_processed"] == 4, done
    assert done["attempts"] == 1, done  # finished during the worker's warm shutdown, not run again
    stack.tasks["restarted"] = done


def test_down_then_up_keeps_every_task_and_key(stack):
    stack.save_logs("first-up")
    started = time.monotonic()
    stack.run_block(DOWN_UP)
    wait_until_up(stack.compose, SERVICES)
    FIGURES["docker compose down, then up -d, every service up, in"] = f"{time.monotonic() - started:.0f} s"
    first_task_runs(stack)
    stack.run_block(RESULT)
    for name, before in stack.tasks.items():
        after = stack.api().get(f"{API}/api/v1/tasks/{before['id']}")
        assert after.status_code == 200, (name, after.text)
        assert after.json()["status"] == before["status"] and after.json()["result"] == before["result"]
    task = submit(stack, "sum_two_numbers", {"a": 1, "b": 1})
    assert finished(stack, task["id"])["result"] == 2


def test_down_v_leaves_nothing(stack):
    stack.save_logs("second-up")
    stack.run_block(REMOVE)
    project = f"label=com.docker.compose.project={stack.compose.project}"
    assert stack.compose.podman("ps", "-a", "-q", "--filter", project).stdout.split() == []
    assert stack.compose.podman("volume", "ls", "-q", "--filter", project).stdout.split() == []
    assert stack.compose.podman("network", "ls", "-q", "--filter", project).stdout.split() == []


@pytest.fixture
def rabbit_stack(engine, project, upstreams, tmp_path_factory) -> Iterator[Stack]:
    files = ("docker-compose.yml", "docker-compose.rabbitmq.yml")
    logs = tmp_path_factory.getbasetemp()
    with running(engine, project, upstreams, logs, "tasker-ct-rabbitmq", files) as made:
        yield made


def test_the_rabbitmq_override_runs_the_same_image_on_rabbitmq(rabbit_stack):
    stack = rabbit_stack
    started = time.monotonic()
    stack.run_block(RABBITMQ)
    wait_until_up(stack.compose, SERVICES | {"rabbitmq"})
    FIGURES["RabbitMQ stack up in"] = f"{time.monotonic() - started:.0f} s"
    first_task_runs(stack)
    stack.key = stack.compose.run(
        "exec", "web", "flask", "--app", "run", "keys", "create", "--name", "ops"
    ).stdout.strip()
    sums = [submit(stack, "sum_two_numbers", {"a": n, "b": 1})["id"] for n in range(5)]
    long = submit(stack, "process_data", {"duration_seconds": 1, "record_count": 4}, priority=9)["id"]
    assert [finished(stack, task_id)["result"] for task_id in sums] == [1, 2, 3, 4, 5]
    assert finished(stack, long)["status"] == "COMPLETED"
    queues = stack.compose.run(
        "exec", "rabbitmq", "rabbitmqctl", "-q", "list_queues", "-p", "tasker", "name", "arguments"
    )
    assert "default" in queues.stdout and "x-max-priority" in queues.stdout, queues.stdout
    broker = stack.compose.run("exec", "worker", "printenv", "CELERY_BROKER_URL").stdout
    assert broker.startswith("amqp://tasker:") and broker.strip().endswith("@rabbitmq:5672/tasker")
