"""The OpenAI client against a real local HTTP server."""

from __future__ import annotations

import pytest
import requests

from app.tasks.errors import TaskFailed, TransientError
from app.tasks.http import Upstream
from app.tasks.openai_client import chat_completion
from tests.support import closed_port


@pytest.fixture
def settings(httpserver):
    return Upstream(httpserver.url_for("/v1"), "sk-unit", 1.0, 1.0)


@pytest.fixture
def session():
    with requests.Session() as session:
        yield session


def test_reply_text(httpserver, settings, session):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"choices": [{"message": {"content": "hi\x00 there"}}]}
    )
    assert chat_completion(session, settings, "gpt-unit", "hello") == "hi there"


@pytest.mark.parametrize(
    ("status", "headers", "retry_after"),
    [(429, {"Retry-After": "3"}, 3.0), (503, {}, None), (500, {"Retry-After": "soon"}, None)],
)
def test_transient_statuses(httpserver, settings, session, status, headers, retry_after):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "busy"}}, status=status, headers=headers
    )
    with pytest.raises(TransientError, match=f"HTTP {status}: busy") as caught:
        chat_completion(session, settings, "gpt-unit", "hello")
    assert caught.value.retry_after == retry_after


def test_retry_after_as_an_http_date(httpserver, settings, session):
    httpserver.expect_request("/v1/chat/completions").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    with pytest.raises(TransientError) as caught:
        chat_completion(session, settings, "gpt-unit", "hello")
    assert caught.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": {"message": "max_tokens is too large"}}, "HTTP 400: max_tokens is too large"),
        (404, {"error": {"message": "The model does not exist"}}, "HTTP 404: The model does not exist"),
        (200, {"choices": []}, "without a reply"),
        (200, {"choices": [{"message": {"content": None}}]}, "not text"),
    ],
)
def test_permanent_failures(httpserver, settings, session, status, body, message):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(body, status=status)
    with pytest.raises(TaskFailed, match=message):
        chat_completion(session, settings, "gpt-unit", "hello")


def test_a_refused_connection_is_transient(settings, session):
    unreachable = Upstream(f"http://127.0.0.1:{closed_port()}/v1", "sk", 1.0, 1.0)
    with pytest.raises(TransientError, match="Could not connect"):
        chat_completion(session, unreachable, "m", "hello")


def test_no_key_fails_before_any_call(httpserver, session):
    keyless = Upstream(httpserver.url_for("/v1"), "", 1.0, 1.0)
    with pytest.raises(TaskFailed, match="OPENAI_API_KEY is not set"):
        chat_completion(session, keyless, "m", "hello")
    assert httpserver.log == []
