"""Declaring task types: parameters from type hints, the rules a declaration is held to, the
modules and entry points that make the catalogue, and what the workers announce of it."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import uuid
from datetime import datetime
from typing import Literal

import pytest
from marshmallow import Schema, ValidationError, fields

from app.core.served import ServedTypes
from app.models import ops
from app.models import task as task_model
from app.tasks import discovery
from app.tasks.declare import declared, task
from app.tasks.hints import DeclarationError, schema_for
from app.tasks.registry import build_registry
from app.wiring import schema_hashes
from tasker import RunContext
from tests.conftest import ROOT, SETTINGS


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def hinted(
    ctx: RunContext,
    n: int,
    x: float,
    s: str,
    flag: bool,
    items: list[int],
    meta: dict,
    mode: Literal["fast", "slow"] = "fast",
    note: str | None = None,
) -> None: ...


GOOD = {"n": 1, "x": 2.5, "s": "text", "flag": True, "items": [1, 2], "meta": {"k": [1]}}


def test_type_hints_make_a_strict_schema_with_defaults():
    schema = schema_for(hinted, skip_first=True)
    assert schema.load(GOOD) == GOOD | {"mode": "fast", "note": None}
    assert schema.load(GOOD | {"mode": "slow", "note": None})["mode"] == "slow"
    for field, value in (
        ("n", "1"), ("n", 1.5), ("n", 2**53), ("x", "2"), ("x", True), ("flag", 1), ("flag", "true"),
        ("items", [1, "2"]), ("items", "12"), ("meta", []), ("mode", "medium"), ("s", "a\x00b"),
    ):  # fmt: skip
        with pytest.raises(ValidationError) as refused:
            schema.load(GOOD | {field: value})
        assert field in refused.value.messages, (field, value)
    with pytest.raises(ValidationError) as refused:
        schema.load(GOOD | {"extra": 1})
    assert "extra" in refused.value.messages
    with pytest.raises(ValidationError) as refused:
        schema.load({k: v for k, v in GOOD.items() if k != "n"})
    assert refused.value.messages == {"n": ["Missing data for required field."]}


def when(day: datetime) -> None: ...


def unhinted(amount) -> None: ...


def many(*values: int) -> None: ...


@pytest.mark.parametrize(
    ("function", "words"),
    [
        (when, ["when(day)", "datetime", "is not supported", "int, float, str, bool"]),
        (unhinted, ["unhinted(amount)", "no type hint"]),
        (many, ["many(values)", "named, one by one"]),
    ],
)
def test_hints_that_cannot_be_checked_are_refused_naming_the_parameter(function, words):
    with pytest.raises(DeclarationError) as refused:
        schema_for(function, skip_first=False)
    assert all(word in str(refused.value) for word in words), str(refused.value)


def plain(a: int) -> int:
    return a


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"name": "Bad Name"}, ["'Bad Name'", "a-z, 0-9 and _"]),
        ({"name": "publish_due"}, ["Tasker's own"]),
        ({"queue": "no spaces"}, ["queue 'no spaces'"]),
        ({"priority": 12}, ["priority 12", "low, normal, high"]),
        ({"time_limit": 0}, ["time_limit", "1 to 86400"]),
        ({"time_limit": 10, "soft_time_limit": 10}, ["soft_time_limit", "below it"]),
        ({"retry_policy": {"tries": 2}}, ["retry_policy takes max_retries and on"]),
        ({"retry_policy": {"on": "sometimes"}}, ["on must be one of any, transient"]),
        ({"parameters": 42}, ["parameters must be a marshmallow Schema"]),
    ],
)
def test_a_bad_declaration_is_refused_naming_the_function_and_the_rule(options, words):
    options = {"name": unique("bad")} | options
    with pytest.raises(DeclarationError) as refused:
        task(**options)(plain)
    message = str(refused.value)
    assert message.startswith("tests.unit.test_declare.plain: ") and all(w in message for w in words), message


def test_a_name_is_declared_once():
    name = unique("twice")

    def first(a: int) -> int:
        return a

    def second(a: int) -> int:
        return a

    task(name=name)(first)
    task(name=name)(first)  # the same function again (a module imported twice): the same type
    with pytest.raises(DeclarationError, match=f"{name}' is declared twice"):
        task(name=name)(second)


def test_the_bare_decorator_takes_the_functions_name_and_docstring_and_gives_a_celery_task():
    def bare_type_for_test(ctx: RunContext, amount: float) -> float:
        """Double it."""
        return amount * 2

    made = task(bare_type_for_test)
    declaration = next(d for d in declared() if d.function is bare_type_for_test)
    assert (declaration.name, declaration.description) == ("bare_type_for_test", "Double it.")
    assert list(declaration.schema.fields) == ["amount"]  # the RunContext is not a parameter
    assert made.name == "tasker.bare_type_for_test" and made.pass_context is True


def write_module(folder, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def on_path(tmp_path):
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))


def test_the_catalogue_is_the_configured_modules_and_the_entry_points(on_path):
    module, from_entry_point = unique("listed"), unique("plugged")
    for name in (module, from_entry_point):
        declaring = f"from tasker import task\n\n@task(name='{name}')\ndef f(a: int) -> int:\n    return a\n"
        write_module(on_path, name, declaring)
    dist = on_path / f"{from_entry_point}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {from_entry_point}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[tasker.tasks]\nmine = {from_entry_point}\n")

    names = [d.name for d in discovery.load([module])]
    built_in = [t.name for t in build_registry()]
    assert names == [*built_in, module, from_entry_point]  # Tasker's own first
    assert discovery.task_modules([module])[from_entry_point] == "the tasker.tasks entry point 'mine'"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("raise RuntimeError('TOKEN is not set')", ["failed to import", "RuntimeError: TOKEN is not set"]),
        ("import no_such_dependency_here", ["ModuleNotFoundError", "no_such_dependency_here"]),
        (
            "from tasker import task\n\n@task\ndef late(when: bytes) -> None: ...\n",
            ["late(when)", "bytes is not supported"],
        ),
    ],
)
def test_a_module_that_cannot_load_stops_the_start_naming_it(on_path, body, words):
    module = unique("broken")
    write_module(on_path, module, body)
    with pytest.raises(DeclarationError) as refused:
        discovery.load([module])
    assert all(word in str(refused.value) for word in words), str(refused.value)
    if "failed to import" in words:
        assert f"task module '{module}' (from TASKER_TASK_MODULES)" in str(refused.value)


def test_parameters_that_cannot_be_json_schema_stop_the_start():
    class Odd(Schema):
        when = fields.Raw(load_default=object())

    def odd(when: object) -> None: ...

    name = unique("odd")
    task(name=name, parameters=Odd)(odd)
    registry = build_registry([d for d in declared() if d.name == name])
    with pytest.raises(DeclarationError, match=f"the parameters of {name} cannot be written as JSON Schema"):
        schema_hashes(registry)


def test_a_worker_refuses_to_start_with_a_module_it_cannot_import(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env |= {"APP_ENV": "testing", "TASKER_DATA_DIR": str(tmp_path), "TASKER_TASK_MODULES": "no_such_tasks"}
    started = subprocess.run(
        [sys.executable, "celery_worker.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 1
    assert started.stderr.strip().endswith(
        "configuration error: task module 'no_such_tasks' (from TASKER_TASK_MODULES) failed to import: "
        "ModuleNotFoundError: No module named 'no_such_tasks'"
    ), started.stderr


def test_workers_announce_what_they_serve_and_a_different_schema_is_reported(sqlite_db, caplog):
    hashes = {"sum_two_numbers": "a" * 64, "add_tax": "b" * 64}
    now = sqlite_db.run(task_model.database_now)
    sqlite_db.run(lambda c: ops.heartbeat(c, "w1@a", "default", now, {"sum_two_numbers": "a" * 64}))
    served = ServedTypes(sqlite_db, hashes, heartbeat_seconds=10)
    assert served.read().workers == {"sum_two_numbers": 1}
    assert served.unserved("sum_two_numbers") is None
    assert served.unserved("add_tax").startswith("No live worker serves add_tax")

    sqlite_db.run(lambda c: ops.heartbeat(c, "w2@b", "default", now, {"add_tax": "c" * 64}))
    served = ServedTypes(sqlite_db, hashes, heartbeat_seconds=10)
    with caplog.at_level(logging.WARNING, logger="app.core.served"):
        assert served.read().mismatched == {"add_tax": ["w2@b"]}
        served._read()  # once per worker and version
    warnings = [r.getMessage() for r in caplog.records if r.name == "app.core.served"]
    assert warnings == [
        "worker w2@b serves add_tax with other parameters than this API (schema cccccccccccc, here "
        "bbbbbbbbbbbb): deploy the same version of its module to both"
    ]
    families = {f.name: f for f in served.metrics()}
    mismatches = {
        s.labels["task_type"]: s.value for s in families["tasker_task_type_schema_mismatches"].samples
    }
    assert mismatches == {"add_tax": 1, "sum_two_numbers": 0}
    workers = {s.labels["task_type"]: s.value for s in families["tasker_task_type_workers"].samples}
    assert workers == {"add_tax": 1, "sum_two_numbers": 1}
