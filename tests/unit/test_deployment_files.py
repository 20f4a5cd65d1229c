"""docker-compose.yml and the Dockerfile run exactly the commands the serving tests exercise."""

from __future__ import annotations

import json
import re

import yaml

from tests.conftest import ROOT

GUNICORN = ["gunicorn", "-c", "gunicorn.conf.py", "run:app"]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_run_the_tested_commands():
    services = compose()["services"]
    assert services["web"]["command"] == GUNICORN
    assert services["worker"]["command"][:5] == [
        "celery",
        "-A",
        "celery_worker.celery",
        "worker",
        "--loglevel=INFO",
    ]
    assert services["migrate"]["command"] == ["python", "init_db.py"]
    celery = ["celery", "-A", "celery_worker.celery"]
    assert services["beat"]["command"][:5] == [*celery, "beat", "--loglevel=INFO"]
    assert services["web"]["ports"] == ["5000:5000"]


def test_compose_waits_for_healthy_services_and_the_migration():
    services = compose()["services"]
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "noeviction" in services["redis"]["command"]


def test_dockerfile_runs_gunicorn_as_a_non_root_user():
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (.+)$", text, re.MULTILINE)
    assert cmd and json.loads(cmd.group(1)) == GUNICORN
    assert re.search(r"^USER tasker$", text, re.MULTILINE)
    assert "pip install -r requirements.txt" in text


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r")):
                assert "==" in line, f"{name}: {line} is not pinned"
