"""What a browser, a proxy and a log reader see: headers, CORS, Host checks, cross-site posts,
rate limits shared through Redis, body limits, and secrets kept out of logs, rows and 503s."""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from app.core.redact import Redactor
from tests.conftest import build_app, child_env
from tests.support import free_port, kill_family, poll, row_of, start_celery, start_gunicorn, worker_options

pytestmark = pytest.mark.integration


def test_security_headers_on_data_and_docs(client):
    data = client.get("/api/v1/tasks")
    assert data.headers["X-Content-Type-Options"] == "nosniff"
    assert data.headers["Referrer-Policy"] == "no-referrer"
    assert data.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in data.headers["Content-Security-Policy"]
    docs = client.get("/docs")
    policy = docs.headers["Content-Security-Policy"]
    assert (
        "frame-ancestors 'none'" in policy
        and "'unsafe-inline'" not in policy.split("script-src")[1].split(";")[0]
    )
    nonce = policy.split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in docs.get_data(as_text=True)  # the one inline script carries it


def test_unknown_hosts_are_refused_in_open_mode(client):
    assert client.get("/api/v1/tasks", headers={"Host": "localhost:5000"}).status_code == 200
    rebound = client.get("/api/v1/tasks", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and rebound.get_json()["code"] == "bad_request"


def test_cross_site_posts_are_refused(client):
    task = client.post(
        "/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 600}
    )
    task_id = task.get_json()["id"]
    evil = {"Origin": "https://evil.example"}
    refused = client.post(f"/api/v1/tasks/{task_id}/cancel", headers=evil)
    assert refused.status_code == 403 and refused.get_json()["code"] == "forbidden"
    form = client.post(f"/api/v1/tasks/{task_id}/cancel", data={"x": "1"})  # an old browser's form post
    assert form.status_code == 415
    assert client.post(f"/api/v1/tasks/{task_id}/cancel").status_code == 200  # curl -X POST


def test_cors_is_off_unless_origins_are_named(stack_env, client):
    assert (
        "Access-Control-Allow-Origin"
        not in client.get("/api/v1/tasks", headers={"Origin": "https://a.example"}).headers
    )
    app = build_app({**stack_env, "CORS_ORIGINS": "https://app.example"})
    try:
        allowed = app.test_client()
        preflight = allowed.options(
            "/api/v1/tasks",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
        assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        posted = allowed.post(
            "/api/v1/tasks",
            json={"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 600},
            headers={"Origin": "https://app.example"},
        )
        assert posted.status_code == 202 and "Location" in posted.headers["Access-Control-Expose-Headers"]
        other = allowed.options("/api/v1/tasks", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
    finally:
        app.extensions["tasker"].db.dispose()


def test_rate_limits_hold_across_api_processes_with_ietf_headers(stack, stack_env):
    """Two app instances stand for two API processes: on the real stack they share only Redis."""
    env = {**stack_env, "AUTH_MODE": "keys", "RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_READ": "4/minute"}
    first, second = build_app(env), build_app(env)
    try:
        key = first.extensions["tasker"].keys.create(f"limited-{uuid.uuid4().hex[:8]}")[1]
        headers = {"X-API-Key": key}
        answers = [app.test_client().get("/api/v1/tasks", headers=headers) for app in (first, second) * 3]
        codes = [a.status_code for a in answers]
        if stack.embedded:  # in memory: each process counts its own
            assert codes == [200] * 6
            return
        assert codes == [200, 200, 200, 200, 429, 429]
        assert answers[0].headers["RateLimit-Policy"] == '"read";q=4;w=60'
        assert "RateLimit" not in answers[0].headers  # remaining and reset: on a 429 only
        refused = answers[4]
        assert refused.get_json()["code"] == "too_many_requests"
        assert refused.get_json()["details"] == {"limit": "4 per 1 minute"}
        assert 0 < int(refused.headers["Retry-After"]) <= 120  # a sliding window: at most two windows
        assert refused.headers["RateLimit"] == f'"read";r=0;t={refused.headers["Retry-After"]}'
        # Writes have their own bucket; another key has its own too.
        other = {"X-API-Key": first.extensions["tasker"].keys.create(f"other-{uuid.uuid4().hex[:8]}")[1]}
        assert second.test_client().get("/api/v1/tasks", headers=other).status_code == 200
    finally:
        for app in (first, second):
            app.extensions["tasker"].db.dispose()


def test_a_key_with_its_own_rate_limit(stack_env):
    app = build_app(
        {**stack_env, "AUTH_MODE": "keys", "RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_READ": "1/minute"}
    )
    try:
        key = app.extensions["tasker"].keys.create(f"big-{uuid.uuid4().hex[:8]}", rate_limit="50/minute")[1]
        client = app.test_client()
        codes = {client.get("/api/v1/tasks", headers={"X-API-Key": key}).status_code for _ in range(5)}
        assert codes == {200}
    finally:
        app.extensions["tasker"].db.dispose()


def test_a_redis_outage_does_not_turn_limits_into_errors(stack_env, caplog):
    env = {**stack_env, "RATE_LIMIT_ENABLED": "true", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    env["CELERY_BROKER_URL"] = stack_env.get("REDIS_URL") or "filesystem://"
    app = build_app(env)
    try:
        with caplog.at_level(logging.WARNING):
            response = app.test_client().get("/api/v1/tasks")
        assert response.status_code == 200  # limited in memory meanwhile, and said so
        assert "Rate limit storage unreachable - falling back to in-memory storage" in caplog.text
    finally:
        app.extensions["tasker"].db.dispose()


def test_chunked_bodies_over_the_limit_are_413(stack_env, tmp_path):
    """gunicorn reads chunked bodies; MAX_CONTENT_LENGTH must stop them too, not cut them."""

    from tests.conftest import child_env
    from tests.support import stop_process

    port = free_port()
    env = child_env(
        {
            **stack_env,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "WEB_CONCURRENCY": "1",
            "MAX_CONTENT_LENGTH": "2048",
        }
    )
    log = tmp_path / "g.log"
    server = start_gunicorn(env, log)
    try:

        def send(body: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                head = (
                    "POST /api/v1/tasks HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                    "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                )
                chunks = b"".join(
                    b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
                    for i in range(0, len(body), 1000)
                )
                sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
                reply = b""
                while chunk := sock.recv(65536):
                    reply += chunk
                return reply

        def up() -> bool:
            try:
                return b" 202 " in send(b'{"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 600}')
            except OSError:
                return False

        poll(up, what="gunicorn to accept a small chunked submit")
        big = b'{"name": "sum", "parameters": {"a": 1, "b": 2}, "pad": "' + b"x" * 10_000 + b'"}'
        reply = send(big)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b'"code":"request_entity_too_large"' in reply.replace(b" ", b"")
    finally:
        stop_process(server)


def test_secrets_stay_out_of_logs_rows_and_503s(stack, openai, tmp_path, caplog):
    """The OpenWeather key travels in the URL: the worker's DEBUG log (urllib3 prints each request
    line) and an upstream error that quotes the request must not leak it."""
    env = {**stack.env, **stack.new_broker(), "LOG_LEVEL": "DEBUG"}
    log = tmp_path / "worker.log"
    worker = start_celery(
        "worker",
        child_env(env),
        log,
        *worker_options(f"secrets-{uuid.uuid4().hex[:6]}@%h"),
        "--loglevel=DEBUG",
    )
    app = build_app(env)
    try:
        openai.expect_request("/owm/weather").respond_with_json(
            {"message": "invalid request: /weather?q=Paris&appid=owm-test-key"}, status=400
        )
        client = app.test_client()
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("test").warning("connecting with key %s", "owm-test-key")
            task = client.post(
                "/api/v1/tasks", json={"name": "weather", "parameters": {"city": "Paris"}}
            ).get_json()
            db = app.extensions["tasker"].db
            row = poll(
                lambda: (r := row_of(db, task["id"])) and r.status == "FAILED" and r,
                what="the weather task to fail",
            )
        assert "owm-test-key" not in (row.error or "") and "[redacted]" in row.error
        assert "owm-test-key" not in caplog.text and "sk-test-key" not in caplog.text
        worker_log = log.read_text()
        assert "appid=[redacted]" in worker_log  # the request line was logged, without the key
        assert "owm-test-key" not in worker_log and "sk-test-key" not in worker_log
    finally:
        kill_family(worker)
        app.extensions["tasker"].db.dispose()


def test_503_bodies_name_the_dependency_never_its_address():
    redactor = Redactor.from_config(
        {
            "DATABASE_URL": "postgresql://tasker:pw@db.internal:5432/tasker",
            "REDIS_URL": "redis://cache.internal:6379/0",
        }
    )
    reason = 'connection to server at "db.internal" (10.1.2.3), port 5432 failed: Connection refused; pw'
    clean = redactor.deep({"dependency": "database", "reason": reason})
    assert clean["dependency"] == "database"
    for leak in ("db.internal", "10.1.2.3", "5432", "pw;", ": pw"):
        assert leak not in clean["reason"], clean
    assert "cache.internal" not in redactor.address(
        "Error 111 connecting to cache.internal:6379. Connection refused."
    )


def test_echoed_input_is_cut_short_in_errors(client):
    long_name = "n" * 5000
    for response in (
        client.post("/run-task", json={"task_name": long_name, "task_parameters": {}}),
        client.post("/api/v1/tasks", json={"name": long_name, "parameters": {}}),
        client.post(
            "/api/v1/schedules", json={"name": "s", "task": long_name, "parameters": {}, "cron": "* * * * *"}
        ),
        client.get(f"/api/v1/tasks/{long_name}"),
    ):
        assert response.status_code == 400
        message = response.get_json()["error"]
        assert "n" * 101 not in message and len(message) < 600, message  # at most 100 of the 5,000
