"""docker-compose.yml and the Dockerfile run exactly the commands the serving tests exercise."""

from __future__ import annotations

import json
import re

import yaml

from app.launcher import COMMANDS
from tests.conftest import ROOT

GUNICORN = ["gunicorn", "-c", "gunicorn.conf.py", "run:app"]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_run_the_tested_commands():
    services = compose()["services"]
    assert services["web"]["command"] == GUNICORN
    celery = ["celery", "-A", "celery_worker.celery", "--quiet"]  # tests/support.py start_celery
    assert services["worker"]["command"][:6] == [*celery, "worker", "--loglevel=INFO"]
    # The tasks' worker and the deliveries' threaded one, with the queues and pool make run gives them.
    for service, launched in (("worker", "worker"), ("webhooks", "webhooks")):
        options = [o for o in COMMANDS[launched][6:] if not o.startswith(("--hostname", "--loglevel"))]
        assert services[service]["command"][6:] == options, service
    assert services["migrate"]["command"] == ["python", "init_db.py"]
    assert services["beat"]["command"][:6] == [*celery, "beat", "--loglevel=INFO"]
    # Flower and Prometheus as the observability tests run them.
    assert services["flower"]["command"][:4] == ["celery", "-A", "celery_worker.celery", "flower"]
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert services["worker"]["environment"]["WORKER_METRICS_PORT"] == "9808"
    assert services["worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    # The API is reached through nginx only, with the config tests/integration/test_proxy.py runs.
    assert "ports" not in services["web"] and services["proxy"]["ports"] == ["5000:8080"]
    assert "./deploy/nginx/tasker.conf:/etc/tasker/tasker.conf:ro" in services["proxy"]["volumes"]
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]


def test_compose_has_no_default_passwords_and_keeps_upstream_keys_on_the_worker():
    text = (ROOT / "docker-compose.yml").read_text()
    for secret in ("SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD"):
        assert f"${{{secret}:?" in text, f"{secret} must be required, with no default"
    services = compose()["services"]
    for upstream in ("OPENAI_API_KEY", "OPENWEATHER_API_KEY"):
        assert upstream in services["worker"]["environment"]
        assert upstream not in services["web"]["environment"]
        assert upstream not in services["webhooks"]["environment"]
    assert "--requirepass" in services["redis"]["command"]


def test_compose_waits_for_healthy_services_and_the_migration():
    services = compose()["services"]
    for name in ("postgres", "redis", "worker", "webhooks", "flower"):
        assert "healthcheck" in services[name]
    assert "healthcheck" not in services["web"]  # the image's HEALTHCHECK: GET /health
    for name in ("web", "worker", "webhooks", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "noeviction" in services["redis"]["command"]


def test_dockerfile_runs_gunicorn_as_a_non_root_user():
    """What tests/containers runs for real; here, that the file still says it."""
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (.+)$", text, re.MULTILINE)
    assert cmd and json.loads(cmd.group(1)) == GUNICORN
    assert re.search(r"^USER 10001$", text, re.MULTILINE)  # numeric: a runtime can check it is not root
    assert "pip install -r requirements.txt" in text
    assert re.search(r"^HEALTHCHECK .+deploy/healthcheck.py", text, re.MULTILINE)
    assert "TASKER_DATA_DIR=/var/lib/tasker" in text


def test_requirements_are_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r", "-e ./examples/")):  # the project's own examples
                assert "==" in line, f"{name}: {line} is not pinned"
