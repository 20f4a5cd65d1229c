"""The "In the image" section of docs/own-task-types.md: an image built `FROM tasker` with a
package of one's own installed and named in TASKER_TASK_MODULES, run for real (the embedded default
inside it): its types are in the catalogue, served by the container's worker, and run."""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid

import requests

from tests.containers import images
from tests.support import ROOT, answers, free_port, poll

OWN_IMAGE = "tasker-own:test"


def dockerfile_from_docs() -> str:
    text = (ROOT / "docs" / "own-task-types.md").read_text()
    start = text.index("\n## In the image\n")
    section = text[start : text.index("\n## ", start + 1)]
    found = re.search(r"```dockerfile\n(.*?)```", section, re.S)
    assert found, "docs/own-task-types.md's In the image section shows no Dockerfile"
    return found.group(1)


def _exited(name: str) -> bool:
    state = subprocess.run(
        ["podman", "inspect", "-f", "{{.State.Status}}", name], capture_output=True, text=True
    )
    if state.stdout.strip() == "exited":
        said = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        raise AssertionError(f"the container exited:\n{said.stdout}{said.stderr}")
    return False


def test_an_image_from_tasker_runs_a_type_of_ones_own(engine, project, tmp_path):
    images.build_tasker(project)  # tasker:latest, what `FROM tasker` names
    context = tmp_path / "own"
    ignored = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(project / "examples" / "mytasks", context / "mytasks", ignore=ignored)
    (context / "Dockerfile").write_text(dockerfile_from_docs())
    images.build_tasker(context, OWN_IMAGE)

    port, name = free_port(), f"tasker-own-{uuid.uuid4().hex[:8]}"
    command = ["python", "run.py", "--worker", "--host", "0.0.0.0"]  # make run's, in the container
    # Open mode on the container's own interface, meant (the port is published on loopback only).
    subprocess.run(["podman", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", "-e",
                    "AUTH_MODE=open", OWN_IMAGE, *command], check=True, capture_output=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: answers(f"{base}/health") or _exited(name), timeout=90, what="the container's API")
        body = {"name": "add_tax", "parameters": {"amount": 100}}
        task = requests.post(f"{base}/api/v1/tasks", json=body, timeout=10).json()

        def done() -> dict | None:
            found = requests.get(f"{base}/api/v1/tasks/{task['id']}?wait=5", timeout=10).json()
            return found if found["status"] in ("COMPLETED", "FAILED") else None

        finished = poll(done, timeout=60, what="add_tax to run in the container")
        assert (finished["status"], finished["result"]) == ("COMPLETED", 120)

        def served() -> dict | None:
            listed = requests.get(f"{base}/api/v1/task-types", timeout=10).json()["task_types"]
            own = {t["name"]: t for t in listed if t["module"] == "mytasks"}
            return own if own and own["add_tax"]["workers"] else None

        assert set(poll(served, timeout=30, what="the worker's heartbeat")) == {
            "add_tax",
            "count_items",
            "flaky_lookup",
            "list_objects",
            "resize_image",
            "summarize",
        }
    finally:
        said = subprocess.run(["podman", "logs", name], capture_output=True, text=True)
        logs = said.stdout + said.stderr
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", OWN_IMAGE], capture_output=True)
    assert "serving task types: add_tax, count_items" in logs
