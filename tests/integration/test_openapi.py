"""schemathesis against /openapi.json: no 5xx, and every response matches the documented schema.

Each operation is fuzzed with both valid (positive) and invalid (negative) inputs; every
response goes through schemathesis's default checks (not_a_server_error, status code,
content type, headers and response schema conformance, negative data rejection, ...).
"""

from __future__ import annotations

import os
import re
import uuid
from contextlib import ExitStack

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from app.models.migrate import upgrade
from config import load_config
from tests.conftest import build_app, new_database

# A fixed set of examples by default, so a run is repeatable; FUZZ_EXAMPLES=N draws N fresh
# random examples per operation for a deeper hunt.
DEEP = os.environ.get("FUZZ_EXAMPLES")
SETTINGS = settings(
    max_examples=int(DEEP or 10),
    derandomize=not DEEP,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)


# The list cursor is opaque: only a next_cursor Tasker made is valid, and a generator cannot
# make one, so a generated cursor is rightly a 400. Every other check still runs on the list.
# /health/ready answers 503 on the fuzz broker, which no worker serves: that is its job.
# A cron expression's ranges, and whether a schedule's parameters fit its task type after a
# PATCH, have no JSON Schema form either: a generated one is rightly a 400 more often than not.
# Nor have a workflow's steps, which name each other (`after`, `$step`) and must form no cycle, nor
# a template's, whose task types must exist: tests/integration/test_workflows.py and
# test_workflow_templates.py cover those rules, and a 400 for each.
# A bulk submit answers 200 with each item's own outcome: an item that breaks the submit's schema
# refuses only itself, with the 400 a single submit would give (tests/integration/test_bulk.py).
# A rate limit's name in its path is 1 to 100 letters, digits, '_', '.' or '-': a generated path
# segment is rightly a 400 (tests/integration/test_rate_limits.py covers it).
# A bulk retry's or cancel's `owner` is for admin keys only, as the list's is: in open mode (the
# stateful phase) a generated owner is rightly a 400.
EXCLUDED = {
    "POST /api/v1/tasks/bulk": [negative_data_rejection],
    "POST /api/v1/tasks/retry": [positive_data_acceptance],
    "POST /api/v1/tasks/cancel": [positive_data_acceptance],
    "GET /api/v1/tasks": [positive_data_acceptance],
    "GET /api/v1/workflows": [positive_data_acceptance],
    "POST /api/v1/workflows": [positive_data_acceptance],
    "PUT /api/v1/workflow-templates/{name}": [positive_data_acceptance],
    "PUT /api/v1/limits/{name}": [positive_data_acceptance],
    "GET /api/v1/schedules": [positive_data_acceptance],
    "GET /health/ready": [not_a_server_error],
    "POST /api/v1/schedules": [positive_data_acceptance],
    "GET /api/v1/schedules/preview": [positive_data_acceptance],
    "PATCH /api/v1/schedules/{schedule_id}": [positive_data_acceptance],
}


# An event stream answers for as long as the client listens: a generated request that is valid
# would never end, and "negative" query strings are often valid ones (any text is a valid name).
# The list stream is left to tests/integration/test_events.py, which covers its errors too; a
# workflow's stream ends with the workflow, which on the fuzz broker (no worker) never comes.
ENDLESS = r"/api/v1/(workflows/\{workflow_id\}/)?events$"


def excluded_checks(case) -> list:
    excluded = list(EXCLUDED.get(case.operation.label, []))
    if isinstance(case.body, dict) and ("run_at" in case.body or case.body.get("webhook")):
        # "in the future, at most 30 days ahead" has no JSON Schema form: a generated run_at
        # is rightly a 400 more often than not. Nor has "a URL whose host resolves to public
        # addresses only" (tests/integration/test_webhooks.py covers it).
        excluded.append(positive_data_acceptance)
    if isinstance(case.body, dict) and "concurrency" in case.body:
        # Whether a submit's concurrency needs a limit depends on its task type (one that declares
        # a key gives it): no JSON Schema form. tests/integration/test_concurrency.py covers it.
        excluded.append(positive_data_acceptance)
    if isinstance(case.body, dict) and {case.body.get("name"), case.body.get("task_name")} & {
        "http_request",
        "start_workflow",
    }:
        # Nor have "a host HTTP_TASK_ALLOWED_HOSTS names" and header names, nor the keys of a
        # workflow's input (no NUL): OpenAPI 3.0 has no propertyNames.
        # tests/integration/test_http_request.py and test_workflow_templates.py cover them.
        excluded.append(positive_data_acceptance)
    return excluded


def operations(app):
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def fuzz(operation, mode, headers=None):
    @given(case=operation.as_strategy(generation_mode=mode))
    @SETTINGS
    def conforms(case):
        case.call_and_validate(headers=headers, excluded_checks=excluded_checks(case))

    conforms()


@pytest.fixture(scope="module")
def fuzz_app(stack):
    """The app on a broker of its own that no worker consumes: fuzzed submits (an hour-long
    process_data among them) stay queued instead of keeping the shared test worker busy.
    In keys mode, called with an admin key: the authenticated API is what is fuzzed (the
    stateful phase below runs in open mode)."""
    app = build_app({**stack.env, **stack.new_broker(), "AUTH_MODE": "keys"})
    key = app.extensions["tasker"].keys.create(f"fuzz-{uuid.uuid4().hex[:8]}", admin=True)[1]
    app.fuzz_headers = {"Authorization": f"Bearer {key}"}
    yield app
    tasker = app.extensions["tasker"]
    for queue in tasker.registry.queues:  # a generated name may have paused one of the stack's
        tasker.pauses.resume(queue)
    for limit in tasker.rate_limits.summary():  # and set rate limits the stack's types consume
        tasker.rate_limits.delete(limit["name"])
    tasker.db.dispose()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms(fuzz_app, mode):
    found = operations(fuzz_app)
    assert len(found) >= 12
    for operation in found:
        has_input = list(operation.iter_parameters()) or operation.get_request_payload_content_types()
        if mode is GenerationMode.NEGATIVE and not has_input:
            continue  # nothing to make invalid
        if re.search(ENDLESS, operation.path):
            continue
        fuzz(operation, mode, fuzz_app.fuzz_headers)


def test_the_document_covers_every_endpoint_and_the_error_shape(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations >= {
        ("/run-task", "post"), ("/get-task-output", "get"), ("/health", "get"), ("/health/ready", "get"),
        ("/api/v1/tasks", "post"), ("/api/v1/tasks", "get"), ("/api/v1/tasks/{task_id}", "get"),
        ("/api/v1/tasks/{task_id}/cancel", "post"), ("/api/v1/tasks/{task_id}/retry", "post"),
        ("/api/v1/task-types", "get"), ("/tasks/{task_id}/status", "get"), ("/tasks/{task_id}/result", "get"),
    }  # fmt: skip
    error = document["components"]["schemas"]["Error"]
    assert set(error["required"]) == {"error", "code", "details"}


@pytest.fixture
def stateful_app(stack, tmp_path):
    """The app on a database and a broker of its own, which the state machine empties before
    each scenario: a scenario's answers then depend on its own steps alone (a schedule name
    taken by an earlier scenario would turn a 201 into a 409, and Hypothesis, replaying the
    scenario, would see its data generation change)."""
    with ExitStack() as cleanup:
        if stack.embedded:  # SQLite and the broker folder both under tmp_path
            env = {**stack.env, "TASKER_DATA_DIR": str(tmp_path)}
            engine = sa.create_engine(load_config("testing", env)["DATABASE_URL"])
            upgrade(engine)
            engine.dispose()
        else:
            env = {
                **stack.env,
                **stack.new_broker(),
                "DATABASE_URL": cleanup.enter_context(new_database("fuzz")),
            }
        app = build_app(env)
        cleanup.callback(app.extensions["tasker"].db.dispose)
        yield app


def empty(app) -> None:
    def delete(conn) -> None:
        conn.execute(sa.text("DELETE FROM tasks"))  # first: a task may name a schedule
        conn.execute(sa.text("DELETE FROM schedules"))

    app.extensions["tasker"].db.run(delete)


def test_stateful_sequences_follow_the_links_and_conform(stateful_app):
    """The stateful phase: submit then read, cancel, retry; create a schedule then read, change,
    delete; run-task then get-task-output, with ids from earlier responses (the document's links)."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", stateful_app)
    # Templates, limits and a queue's pause have no links to follow; in the machine they only crowd
    # out the linked sequences (the operation test above covers them).
    unlinked = r"/workflow-templates|/api/v1/limits|/api/v1/queues/"
    machine = schema.exclude(path_regex=ENDLESS).exclude(path_regex=unlinked).as_state_machine()
    steps: list[str] = []

    class Conforming(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            empty(stateful_app)

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            steps.append(case.operation.label)
            case.validate_response(response, excluded_checks=excluded_checks(case))

    Conforming.run(settings=settings(SETTINGS, stateful_step_count=6))
    linked = {"GET /get-task-output", "GET /api/v1/tasks/{task_id}", "GET /api/v1/schedules/{schedule_id}"}
    assert linked & set(steps), f"no linked operation was reached: {sorted(set(steps))}"
