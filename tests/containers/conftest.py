"""Fixtures of the container test: the engine, a copy of the project, the stand-in upstreams.

`make test-containers` runs these; `make test` leaves them out (they need podman). With
REQUIRE_SERVICES=1 a machine without podman fails the run instead of skipping it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.containers import images
from tests.containers.engine import podman_service
from tests.integration.test_query_chatgpt import reply
from tests.integration.test_weather import owm_body
from tests.support import ROOT, free_port

REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
PUBLISHED = (5000, 5555, 9090)  # docker-compose.yml's published ports: proxy, Flower, Prometheus
FIGURES: dict[str, str] = {}


def pytest_terminal_summary(terminalreporter) -> None:
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The images built (or found), and podman's Docker-compatible API on a socket of our own."""
    missing = [tool for tool in ("podman", "debootstrap") if not shutil.which(tool)]
    if missing:
        message = f"{' and '.join(missing)} not installed (.ci/run installs them)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(message)
    for port in PUBLISHED:
        if subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True).stdout:
            pytest.fail(f"port {port}, which docker-compose.yml publishes, is taken", pytrace=False)
    os.environ["CONTAINERS_CONF"] = str(images.HERE / "containers.conf")
    started = time.monotonic()
    images.prepare()
    FIGURES["base and stand-ins ready in"] = f"{time.monotonic() - started:.0f} s"
    with podman_service(tmp_path_factory.mktemp("engine")) as env:
        yield env


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project as a user has it after `git clone` (tracked and new files, nothing ignored)."""
    folder = tmp_path_factory.mktemp("clone") / "tasker"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    return folder


@dataclass
class Upstreams:
    """One local HTTP server, reached from the containers as host.containers.internal: OpenAI's and
    OpenWeather's stand-ins, and a webhook receiver that keeps what it is sent."""

    server: HTTPServer
    received: list[dict] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://host.containers.internal:{self.server.port}"

    def receive(self, request: Request) -> Response:
        self.received.append({"headers": dict(request.headers), "body": request.get_data(as_text=True)})
        return Response("ok")


def chat_reply(request: Request) -> Response:
    return Response(
        json.dumps(reply(f"re: {request.get_json()['messages'][-1]['content']}")),
        content_type="application/json",
    )


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    # Every address of this machine: the containers come from their bridge's gateway address.
    server = HTTPServer(host="0.0.0.0", port=free_port(), threaded=True)
    server.start()
    found = Upstreams(server)
    server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(chat_reply)
    server.expect_request("/owm/weather", method="GET").respond_with_json(owm_body())
    server.expect_request("/hook", method="POST").respond_with_handler(found.receive)
    yield found
    server.clear()
    server.stop()


def fill_env(folder: Path) -> dict[str, str]:
    """Fill in `.env` as copied from .env.example (the compose section's first step); return what it holds."""
    values = {
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "REDIS_PASSWORD": secrets.token_hex(12),
        "SECRET_KEY": secrets.token_hex(32),
        "FLOWER_PASSWORD": secrets.token_hex(12),
        "RABBITMQ_PASSWORD": secrets.token_hex(12),
        "OPENAI_API_KEY": "sk-test-key",
        "OPENWEATHER_API_KEY": "owm-test-key",
    }
    lines = (folder / ".env").read_text().splitlines()
    named = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    assert named == set(values), (
        f".env.example names {sorted(named)}; the compose section asks for {sorted(values)}"
    )
    filled = [f"{line}{values[line[:-1]]}" if line[:-1] in values else line for line in lines]
    (folder / ".env").write_text("\n".join(filled) + "\n")
    return values


def write_tasker_env(folder: Path, upstreams: Upstreams) -> None:
    """`tasker.env`, the optional settings file: the upstreams and the webhook receiver are local."""
    settings = {
        "OPENAI_BASE_URL": f"{upstreams.base}/v1",
        "OPENWEATHER_BASE_URL": f"{upstreams.base}/owm",
        "WEBHOOK_ALLOW_HTTP": "true",
        "WEBHOOK_ALLOWED_HOSTS": "host.containers.internal",
    }
    (folder / "tasker.env").write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
