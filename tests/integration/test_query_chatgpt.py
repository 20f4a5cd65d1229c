"""query_chatgpt against a real local HTTP server at OPENAI_BASE_URL (no patched requests)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from werkzeug import Request, Response

from tests.conftest import build_app
from tests.support import kill_family, poll, row_of, wait_for_output

PATH = "/v1/chat/completions"


def reply(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}


def upstream_error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


@dataclass
class Script:
    """Answers each call with the next scripted response and records what arrived when."""

    steps: list[tuple[int, Any, dict[str, str], float]]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        status, body, headers, delay = self.steps[min(len(self.calls), len(self.steps) - 1)]
        self.calls.append(
            {"at": time.monotonic(), "json": request.get_json(), "headers": dict(request.headers)}
        )
        if delay:
            time.sleep(delay)  # a slow upstream: the delay is the point
        return Response(json.dumps(body), status=status, headers=headers, content_type="application/json")


def serve(openai, *steps) -> Script:
    script = Script([(s[0], s[1], s[2] if len(s) > 2 else {}, s[3] if len(s) > 3 else 0) for s in steps])
    openai.expect_request(PATH, method="POST").respond_with_handler(script)
    return script


def submit(client, parameters) -> str:
    response = client.post("/run-task", json={"task_name": "query_chatgpt", "task_parameters": parameters})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["task_uuid"]


def test_success_returns_the_reply_and_keeps_the_key_out_of_the_row(client, worker, openai, db):
    script = serve(openai, (200, reply("Why did the chicken cross the road?")))
    task_id = submit(client, {"prompt": "Tell me a joke.", "max_tokens": 50, "temperature": 0.2})
    output = wait_for_output(client, task_id)
    assert output == {"status": "COMPLETED", "result": "Why did the chicken cross the road?", "error": None}
    (call,) = script.calls
    assert call["headers"]["Authorization"] == "Bearer sk-test-key"
    assert call["json"] == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Tell me a joke."}],
        "max_tokens": 50,
        "temperature": 0.2,
    }
    row = row_of(db, task_id)
    assert "sk-test-key" not in json.dumps(row.parameters) + str(row.result)
    assert row.queue == "external_api"


def test_429_is_retried_after_retry_after(client, worker, openai, db):
    script = serve(
        openai, (429, upstream_error("Rate limit reached"), {"Retry-After": "1"}), (200, reply("ok"))
    )
    task_id = submit(client, {"prompt": "hello", "model": "gpt-other"})
    poll(lambda: row_of(db, task_id).status == "RETRYING", what="status RETRYING")
    assert "429" in row_of(db, task_id).error
    assert wait_for_output(client, task_id)["result"] == "ok"
    assert len(script.calls) == 2
    assert script.calls[1]["at"] - script.calls[0]["at"] >= 1.0
    assert script.calls[0]["json"]["model"] == "gpt-other"
    assert row_of(db, task_id).attempts == 2


def test_server_errors_fail_after_three_retries(client, worker, openai, db):
    script = serve(openai, (500, upstream_error("The server had an error")))
    task_id = submit(client, {"prompt": "hello"})
    output = wait_for_output(client, task_id)
    assert output["status"] == "FAILED"
    assert "HTTP 500" in output["error"] and "The server had an error" in output["error"]
    assert "4 attempts" in output["error"]
    assert len(script.calls) == 4
    assert row_of(db, task_id).attempts == 4


def test_401_fails_at_once_with_the_upstream_reason(client, worker, openai):
    script = serve(openai, (401, upstream_error("Incorrect API key provided: sk-test***")))
    task_id = submit(client, {"prompt": "hello"})
    output = wait_for_output(client, task_id)
    assert output["status"] == "FAILED"
    assert output["error"] == "OpenAI API returned HTTP 401: Incorrect API key provided: sk-test***"
    assert len(script.calls) == 1


def test_a_read_timeout_is_retried(client, worker, openai, db):
    script = serve(openai, (200, reply("late"), {}, 2.0), (200, reply("on time")))
    task_id = submit(client, {"prompt": "hello"})
    assert wait_for_output(client, task_id) == {"status": "COMPLETED", "result": "on time", "error": None}
    assert len(script.calls) == 2
    assert row_of(db, task_id).attempts == 2


def test_a_redirect_is_not_followed(client, worker, openai):
    script = serve(openai, (302, {}, {"Location": "http://127.0.0.1:9/steal"}))
    output = wait_for_output(client, submit(client, {"prompt": "hello"}))
    assert output["status"] == "FAILED" and "HTTP 302" in output["error"]
    assert len(script.calls) == 1


@pytest.fixture
def keyless_env(stack, start_worker):
    """A worker with no OPENAI_API_KEY, on a broker of its own."""
    env = {**stack.env, "OPENAI_API_KEY": "", **stack.new_broker()}
    worker = start_worker(env, concurrency=1, name=f"keyless-{stack.name}")
    yield env
    kill_family(worker)


def test_no_key_on_the_worker_fails_saying_so(keyless_env, openai):
    script = serve(openai, (200, reply("should not be called")))
    app = build_app(keyless_env)
    client = app.test_client()
    output = wait_for_output(client, submit(client, {"prompt": "hello"}))
    assert output["status"] == "FAILED"
    assert "OPENAI_API_KEY is not set on the worker" in output["error"]
    assert script.calls == []
    app.extensions["tasker"].db.dispose()
