"""Every bad input gets a 4xx JSON error naming the field and the rule; none gets a 500."""

from __future__ import annotations

import pytest

from app.tasks.parameters import MAX_LETTERS_LENGTH, MAX_PROMPT_LENGTH

JSON = "application/json"


def post_raw(client, body, content_type=JSON):
    data = body if isinstance(body, bytes | str) else None
    return client.post("/run-task", data=data, content_type=content_type)


def assert_error(response, status, code, field=None):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "code", "details"}
    assert body["code"] == code
    assert body["error"] and "Traceback" not in body["error"]
    if field is not None:
        assert field in body["error"], body
    return body


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", JSON, 400, "bad_request"),
        (b"", JSON, 400, "bad_request"),
        (b"[1, 2]", JSON, 400, "bad_request"),
        (b'"a string"', JSON, 400, "bad_request"),
        (b"null", JSON, 400, "bad_request"),
        (b'{"task_name": "sum", "task_parameters": {"a": NaN, "b": 1}}', JSON, 400, "bad_request"),
        (b'{"task_name": "sum", "task_parameters": {"a": Infinity, "b": 1}}', JSON, 400, "bad_request"),
        (b"[" * 100_000 + b"]" * 100_000, JSON, 400, "bad_request"),
        (b"\xff\xfe\x00", JSON, 400, "bad_request"),
        (b'{"task_name": "sum"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"task_name": "sum"}', "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
)
def test_malformed_bodies(client, body, content_type, status, code):
    assert_error(post_raw(client, body, content_type), status, code)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"task_parameters": {"a": 1, "b": 2}}, "task_name"),
        ({"task_name": "sum"}, "task_parameters"),
        ({"task_name": 5, "task_parameters": {}}, "task_name"),
        ({"task_name": "sum", "task_parameters": [1, 2]}, "task_parameters"),
        ({"task_name": "sum", "task_parameters": "a=1"}, "task_parameters"),
        ({"task_name": "sum", "task_parameters": {"a": 1, "b": 2}, "extra": 1}, "extra"),
    ],
)
def test_missing_or_wrong_fields(client, body, field):
    assert_error(client.post("/run-task", json=body), 400, "validation_error", field)


def test_unknown_task_lists_the_valid_ones(client):
    body = assert_error(
        client.post("/run-task", json={"task_name": "mine_bitcoin", "task_parameters": {}}),
        400,
        "unknown_task",
        "task_name",
    )
    for name in ("sum_two_numbers", "sum", "find_longest_consecutive_letters", "query_chatgpt", "chatgpt"):
        assert name in body["error"]
    assert "sum_two_numbers" in body["details"]["valid_task_names"]


@pytest.mark.parametrize(
    ("name", "parameters", "field"),
    [
        ("sum", {"a": "5", "b": 1}, "a"),
        ("sum", {"a": 5, "b": "1"}, "b"),
        ("sum", {"a": True, "b": 1}, "a"),
        ("sum", {"a": None, "b": 1}, "a"),
        ("sum", {"a": [1], "b": 1}, "a"),
        ("sum", {"a": {"x": 1}, "b": 1}, "a"),
        ("sum", {"a": 1}, "b"),
        ("sum", {}, "a"),
        ("sum", {"a": 2**53, "b": 1}, "a"),
        ("sum", {"a": 10**400, "b": 1}, "a"),
        ("sum", {"a": 1, "b": 2, "c": 3}, "c"),
        ("find_longest_consecutive_letters", {}, "string"),
        ("find_longest_consecutive_letters", {"string": 123}, "string"),
        ("find_longest_consecutive_letters", {"string": None}, "string"),
        ("find_longest_consecutive_letters", {"string": "a" * (MAX_LETTERS_LENGTH + 1)}, "string"),
        ("find_longest_consecutive_letters", {"string": "a\x00b"}, "string"),
        ("find_longest_consecutive_letters", {"string": "\ud800"}, "string"),
        ("query_chatgpt", {}, "prompt"),
        ("query_chatgpt", {"prompt": ""}, "prompt"),
        ("query_chatgpt", {"prompt": "x" * (MAX_PROMPT_LENGTH + 1)}, "prompt"),
        ("chatgpt", {"prompt": "hi", "max_tokens": "10"}, "max_tokens"),
        ("chatgpt", {"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ("chatgpt", {"prompt": "hi", "max_tokens": 1.5}, "max_tokens"),
        ("chatgpt", {"prompt": "hi", "temperature": 3}, "temperature"),
        ("chatgpt", {"prompt": "hi", "temperature": "hot"}, "temperature"),
        ("chatgpt", {"prompt": "hi", "model": ""}, "model"),
        ("chatgpt", {"prompt": "hi", "api_key": "sk-x"}, "api_key"),
    ],
)
def test_parameters_that_break_the_schema(client, name, parameters, field):
    response = client.post("/run-task", json={"task_name": name, "task_parameters": parameters})
    body = assert_error(response, 400, "validation_error", field)
    assert field in body["details"]["task_parameters"]


def test_body_over_max_content_length_is_413(client, app):
    size = app.config["MAX_CONTENT_LENGTH"] + 1
    body = b'{"task_name": "sum", "task_parameters": {"a": 1, "b": 2}, "pad": "' + b"x" * size + b'"}'
    assert_error(post_raw(client, body), 413, "request_entity_too_large")


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "task_uuid"), ("?task_uuid=", "task_uuid"), ("?task_uuid=not-a-uuid", "task_uuid"),
     ("?task_uuid=%00", "task_uuid"), ("?task_uuid=1&x=2", "task_uuid")],
)  # fmt: skip
def test_bad_task_uuid_is_400(client, query, field):
    assert_error(client.get(f"/get-task-output{query}"), 400, "validation_error", field)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/run-task", 405, "method_not_allowed"),
        ("delete", "/get-task-output", 405, "method_not_allowed"),
        ("get", "/no-such-page", 404, "not_found"),
    ],
)
def test_unknown_routes_and_methods(client, method, path, status, code):
    response = getattr(client, method)(path)
    assert_error(response, status, code)
    if status == 405:
        assert "Allow" in response.headers


def test_an_unexpected_error_is_a_500_json_without_a_stack_trace(app, client, mocker):
    manager = app.extensions["tasker"].tasks
    mocker.patch.object(manager, "get_output", side_effect=RuntimeError("secret internals"))
    response = client.get("/get-task-output?task_uuid=3f1b6a52-8a39-4d5e-9c1e-0a4f6f2b7c11")
    body = assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.get_data(as_text=True)
    assert body["details"] == {}


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({}, "city"),
        ({"city": ""}, "city"),
        ({"city": "x" * 101}, "city"),
        ({"city": "Paris", "units": "C"}, "units"),
    ],
)
def test_weather_parameters(client, parameters, field):
    response = client.post("/run-task", json={"task_name": "weather", "task_parameters": parameters})
    assert_error(response, 400, "validation_error", field)


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({"run_at": "2030-01-01T09:00:00"}, "run_at: Add a time zone, such as Z (UTC) or +01:00"),
        (
            {"webhook": "http://example.com/hook"},
            'webhook: Must be an object: {"url": "https://...", "events"',
        ),
        ({"webhook": {"url": "http://localhost:8080/hook"}}, "names it, whole, in WEBHOOK_ALLOWED_HOSTS"),
    ],
)
def test_a_newcomers_mistakes_are_told_how_to_fix_them(client, extra, says):
    body = {"name": "sum", "parameters": {"a": 1, "b": 2}, **extra}
    response = client.post("/api/v1/tasks", json=body)
    assert response.status_code == 400 and says in response.get_json()["error"], response.get_json()
