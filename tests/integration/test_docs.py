"""Every shell block of the README and of docs/ run by a reader at a terminal, against a Tasker of
its own started as `make run` starts it, on the embedded default and on PostgreSQL + Redis; each
output must be the one the page shows (tests/doc_blocks.py says how they are compared). A block
that must not run says why on the page (`<!-- not run: ... -->`); the sections run by the
container tests are left to them. And the site builds with `mkdocs build --strict`, loading
nothing from outside."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, child_env, new_database
from tests.doc_blocks import Reader, Shell, page_blocks
from tests.support import Receiver, answers, free_port, kill_family, poll, stop_process

PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
# Sections whose blocks another test runs, as they need what this one does not start.
ELSEWHERE = {
    "docs/operating.md": ("Docker compose",),  # tests/containers/test_compose.py
    "docs/own-task-types.md": ("In the image",),  # tests/containers/test_own_image.py
}
RUN = [page for page in PAGES if "```bash" in (ROOT / page).read_text()]


@contextmanager
def tasker(env: dict[str, str], folder: Path) -> Iterator[int]:
    """`make run` (`python run.py --worker`) on a port of its own; yields the port."""
    port = free_port()
    log = folder / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "run.py", "--worker", "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        poll(lambda: (process.poll() is None and answers(f"http://127.0.0.1:{port}/health/ready"))
             or _exited(process, log), timeout=60, what="the docs' Tasker")  # fmt: skip
        poll(lambda: _served(port), timeout=60, what="its worker to say what it serves")
        yield port
    finally:
        stop_process(process, timeout=30)
        if process.poll() is None:
            kill_family(process)


def _served(port: int) -> bool:
    """Whether the worker's heartbeat has said what it serves, as it has a few seconds after `make
    run` (until then a submit carries a warning that no worker serves the type). With API keys the
    catalogue needs one: the page's first blocks make it, so there is nothing to wait for."""
    answer = requests.get(f"http://127.0.0.1:{port}/api/v1/task-types", timeout=10)
    return answer.status_code == 401 or all(t["workers"] for t in answer.json()["task_types"])


def _exited(process: subprocess.Popen, log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"run.py exited:\n{log.read_text()[-3000:]}")
    return False


@pytest.fixture(params=["embedded", "postgres"])
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = child_env(
        {"APP_ENV": "development", "TASKER_DATA_DIR": str(tmp_path / "data"), "STACK": request.param}
    )
    with ExitStack() as stack:
        if request.param == "postgres":
            dbs = request.getfixturevalue("redis_dbs")
            env["DATABASE_URL"] = stack.enter_context(new_database("docs"))
            env["REDIS_URL"] = dbs.claim()
            stack.callback(dbs.release, env["REDIS_URL"])
        yield env


@pytest.mark.parametrize("page", RUN)
def test_every_block_of_the_page_gives_the_output_it_shows(page, backends, tmp_path):
    text = (ROOT / page).read_text()
    blocks = page_blocks(text, ELSEWHERE.get(page, ()))
    runnable = [block for block in blocks if not block.skipped and block.only_on in ("", backends["STACK"])]
    # curl as at a terminal: a pipe would add its progress meter to every output.
    (tmp_path / ".curlrc").write_text("--silent\n--show-error\n")
    receiver = Receiver().start()  # the pages' webhook receiver, "127.0.0.1:8001"
    env = {**backends, **page_settings(text)}
    with tasker(env, tmp_path) as port:
        shell = Shell(ROOT, {**env, "CURL_HOME": str(tmp_path)})
        places = {"localhost:5000": f"localhost:{port}", "127.0.0.1:8001": f"127.0.0.1:{receiver.port}"}
        reader = Reader(shell, page, places)
        try:
            for block in runnable:
                reader.run(block)
        finally:
            shell.close()
            receiver.stop()


def page_settings(text: str) -> dict[str, str]:
    """The settings a page's Tasker runs with: `<!-- tasker: NAME=value ... -->` on the page."""
    found = re.search(r"^<!--\s*tasker:\s*(.*?)\s*-->", text, re.M)  # a line of its own
    return dict(pair.split("=", 1) for pair in found.group(1).split()) if found else {}


def test_a_block_not_run_says_why_and_they_are_few():
    skipped = {
        f"{page}:{block.line}": block.skipped
        for page in RUN
        for block in page_blocks((ROOT / page).read_text(), ELSEWHERE.get(page, ()))
        if block.skipped
    }
    assert all(len(why) > 10 for why in skipped.values()), skipped
    total = sum(len(page_blocks((ROOT / page).read_text())) for page in RUN)
    assert len(skipped) * 5 <= total, f"{len(skipped)} of {total} blocks are not run: {skipped}"


def test_the_site_builds_strict_and_loads_nothing_from_outside(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, env=child_env({"NO_MKDOCS_2_WARNING": "1"}),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    outside = re.compile(r"""<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//""")
    for page in site.rglob("*.html"):
        assert not outside.search(page.read_text()), f"{page.relative_to(site)} loads from outside"
    reference = (site / "api" / "index.html").read_text()
    assert "submitTask" in reference and "getTaskOutput" in reference  # from /openapi.json


def test_what_the_pages_tell_task_code_to_call_exists_on_the_run_context():
    """Task code reaches Tasker through its run context (`ctx`); a page that names a method of it
    that does not exist, or tells a task to call one on `self`, has drifted from the code."""
    from tasker import RunContext

    named = {
        (page, method)
        for page in PAGES
        for method in re.findall(r"\bctx\.(\w+)\(", (ROOT / page).read_text())
    }
    on_self = {(page, m) for page in PAGES for m in re.findall(r"`self\.(\w+)\(", (ROOT / page).read_text())}
    assert not on_self, f"task code calls these on its run context, not on self: {sorted(on_self)}"
    missing = {(page, method) for page, method in named if not hasattr(RunContext, method)}
    assert not missing, f"not methods of RunContext: {sorted(missing)}"
