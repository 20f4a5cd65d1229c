"""Keys, owners and limits, on both stacks: every endpoint that takes an id, called with another
owner's id, answers exactly like an unknown id and changes nothing; every list shows only the
caller's rows; keys are checked, limited and never echoed."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from datetime import timedelta

import pytest

from app.core.beat.retention import Retention
from app.core.keys import KEY_PREFIX, new_key, well_formed
from app.models import api_key as key_model
from app.models.task import TaskStatus
from tests.conftest import ROOT, build_app, child_env
from tests.support import insert_task, make_old, row_of

pytestmark = pytest.mark.integration


@pytest.fixture
def keyed(stack_env):
    """An app in keys mode, with keys for two owners (alice, bob) and an admin."""
    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    keys = app.extensions["tasker"].keys
    tag = uuid.uuid4().hex[:8]  # owners of this test only: the database is shared by the session
    made = {who: keys.create(f"{who}-{tag}", admin=(who == "admin"))[1] for who in ("alice", "bob", "admin")}
    app.test_keys = made
    app.test_env = stack_env
    app.test_owners = {who: f"{who}-{tag}" for who in made}
    yield app
    app.extensions["tasker"].db.dispose()


def auth(app, who):
    return {"Authorization": f"Bearer {app.test_keys[who]}"}


def test_keys_have_a_prefix_and_a_checksum():
    key = new_key()
    assert key.startswith(KEY_PREFIX) and len(key) == 42 and well_formed(key)
    broken = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert not well_formed(broken)  # one wrong character: caught without a lookup
    assert not well_formed("tsk_short") and not well_formed("x" * 42)


def test_only_a_keyed_hash_is_stored(keyed, db):
    key = keyed.test_keys["alice"]
    rows = db.run(lambda c: c.exec_driver_sql("SELECT key_hash, hint FROM api_keys").all())
    assert all(key not in (row.key_hash, row.hint) for row in rows)
    assert any(row.key_hash == keyed.extensions["tasker"].keys.digest(key) for row in rows)


def test_every_endpoint_needs_a_key_but_health_and_docs(keyed):
    client = keyed.test_client()
    for method, path in [
        ("post", "/run-task"),
        ("get", "/get-task-output?task_uuid=" + str(uuid.uuid4())),
        ("post", "/api/v1/tasks"),
        ("get", "/api/v1/tasks"),
        ("get", f"/api/v1/tasks/{uuid.uuid4()}"),
        ("get", "/api/v1/schedules"),
        ("get", "/api/v1/task-types"),
        ("get", "/api/v1/queues"),
        ("get", "/api/v1/keys"),
    ]:
        response = getattr(client, method)(path, json={})
        assert response.status_code == 401, (path, response.get_json())
        assert response.headers["WWW-Authenticate"] == "Bearer realm=tasker"  # RFC 6750, a token value
        assert response.get_json()["code"] == "unauthorized"
    for path in ("/health", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize(
    "header",
    [
        lambda k: {"Authorization": f"Bearer {k}"},
        lambda k: {"X-API-Key": k},
    ],
)
def test_a_wrong_or_revoked_key_is_refused_and_never_echoed(keyed, header):
    client = keyed.test_client()
    good = keyed.test_keys["alice"]
    assert client.get("/api/v1/tasks", headers=header(good)).status_code == 200
    mistyped = good[:-1] + ("x" if good[-1] != "x" else "y")
    for wrong in (new_key(), mistyped, "not-a-key"):
        response = client.get("/api/v1/tasks", headers=header(wrong))
        assert response.status_code == 401
        assert "error=invalid_token" in response.headers["WWW-Authenticate"]
        assert wrong not in response.get_data(as_text=True)
    keys = keyed.extensions["tasker"].keys
    alice = next(k for k in keys.list() if k["owner"] == keyed.test_owners["alice"])
    keys.revoke(uuid.UUID(alice["id"]))
    assert client.get("/api/v1/tasks", headers=header(good)).status_code == 401


def test_anonymous_health_is_up_or_down_only(keyed):
    client = keyed.test_client()
    anonymous = client.get("/health/ready").get_json()
    assert "checks" not in anonymous and anonymous.get("details", {}) == {}
    detailed = client.get("/health/ready", headers=auth(keyed, "alice")).get_json()
    assert "checks" in detailed or detailed["details"]


def test_another_owners_ids_are_not_found_and_nothing_changes(keyed, db):
    client = keyed.test_client()
    alice, bob = auth(keyed, "alice"), auth(keyed, "bob")
    task = client.post(
        "/api/v1/tasks",
        json={"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600},
        headers=alice,
    ).get_json()
    finished = insert_task(db, status=TaskStatus.FAILED, owner=keyed.test_owners["alice"])
    schedule = client.post(
        "/api/v1/schedules",
        json={"name": "nightly", "task": "sum", "parameters": {"a": 1, "b": 2}, "cron": "0 3 * * *"},
        headers=alice,
    ).get_json()
    unknown_task, unknown_schedule = uuid.uuid4(), uuid.uuid4()

    def same_as_unknown(method, path, unknown_path, **kwargs):
        theirs = getattr(client, method)(path, headers=bob, **kwargs)
        none = getattr(client, method)(unknown_path, headers=bob, **kwargs)
        assert theirs.status_code == 404, (path, theirs.get_json())
        assert none.status_code == 404
        strip = lambda body: {**body, "details": {}}  # noqa: E731 - the details name the id asked for
        assert strip(theirs.get_json()) == strip(none.get_json())

    for suffix in ("", "?wait=1", "/status", "/result", "/events"):
        same_as_unknown("get", f"/api/v1/tasks/{task['id']}{suffix}", f"/api/v1/tasks/{unknown_task}{suffix}")
    same_as_unknown(
        "get", f"/get-task-output?task_uuid={task['id']}", f"/get-task-output?task_uuid={unknown_task}"
    )
    same_as_unknown("post", f"/api/v1/tasks/{task['id']}/cancel", f"/api/v1/tasks/{unknown_task}/cancel")
    same_as_unknown("post", f"/api/v1/tasks/{finished}/retry", f"/api/v1/tasks/{unknown_task}/retry")
    for method, kwargs in (("get", {}), ("patch", {"json": {"enabled": False}}), ("delete", {})):
        same_as_unknown(
            method,
            f"/api/v1/schedules/{schedule['id']}",
            f"/api/v1/schedules/{unknown_schedule}",
            **kwargs,
        )

    # Nothing changed: still SCHEDULED, still FAILED with no retry, the schedule still enabled.
    assert row_of(db, task["id"]).status == TaskStatus.SCHEDULED
    assert row_of(db, task["id"]).cancel_requested_at is None
    assert client.get(f"/api/v1/schedules/{schedule['id']}", headers=alice).get_json()["enabled"] is True
    # Lists show only the caller's rows.
    assert client.get("/api/v1/tasks?limit=200", headers=bob).get_json()["tasks"] == []
    assert client.get("/api/v1/schedules", headers=bob).get_json()["schedules"] == []
    mine = client.get("/api/v1/tasks?limit=200", headers=alice).get_json()["tasks"]
    assert {t["id"] for t in mine} == {task["id"], str(finished)}
    assert [s["id"] for s in client.get("/api/v1/schedules", headers=alice).get_json()["schedules"]] == [
        schedule["id"]
    ]
    # Bob may not ask for Alice's rows by name; an admin sees them, and may filter by owner.
    asked = client.get(f"/api/v1/tasks?owner={keyed.test_owners['alice']}", headers=bob)
    assert asked.status_code == 400 and "owner" in asked.get_json()["details"]
    admin = auth(keyed, "admin")
    assert client.get(f"/api/v1/tasks/{task['id']}", headers=admin).status_code == 200
    only_alice = client.get(f"/api/v1/tasks?owner={keyed.test_owners['alice']}", headers=admin).get_json()
    assert {t["owner"] for t in only_alice["tasks"]} == {keyed.test_owners["alice"]}
    assert client.post(f"/api/v1/tasks/{task['id']}/cancel", headers=alice).status_code == 200


def test_idempotency_keys_are_per_owner_and_cover_the_whole_request(keyed):
    client = keyed.test_client()
    body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600}
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = client.post("/api/v1/tasks", json=body, headers=auth(keyed, "alice") | key)
    other = client.post("/api/v1/tasks", json=body, headers=auth(keyed, "bob") | key)
    assert first.status_code == other.status_code == 202
    assert first.get_json()["id"] != other.get_json()["id"]
    replay = client.post("/api/v1/tasks", json=body, headers=auth(keyed, "alice") | key)
    assert replay.status_code == 200 and replay.get_json()["id"] == first.get_json()["id"]
    for change in ({"priority": "high"}, {"countdown": 7200}):
        changed = client.post("/api/v1/tasks", json=body | change, headers=auth(keyed, "alice") | key)
        assert changed.status_code == 409, change


def test_admin_keys_manage_keys_and_others_cannot(keyed):
    client = keyed.test_client()
    assert client.get("/api/v1/keys", headers=auth(keyed, "alice")).status_code == 403
    admin = auth(keyed, "admin")
    made = client.post("/api/v1/keys", json={"name": "ci-runner", "rate_limit": "50/second"}, headers=admin)
    assert made.status_code == 201, made.get_json()
    new = made.get_json()
    assert well_formed(new["key"]) and new["owner"] == "ci-runner" and new["admin"] is False
    listed = client.get("/api/v1/keys", headers=admin).get_json()["keys"]
    assert new["id"] in {k["id"] for k in listed}
    assert new["key"] not in str(listed) and all("key" not in k for k in listed)
    theirs = {"Authorization": f"Bearer {new['key']}"}
    assert client.get("/api/v1/tasks", headers=theirs).status_code == 200
    bad = client.post("/api/v1/keys", json={"name": "x", "rate_limit": "lots"}, headers=admin)
    assert bad.status_code == 400 and "rate_limit" in bad.get_json()["details"]
    assert client.delete(f"/api/v1/keys/{new['id']}", headers=admin).get_json()["revoked_at"]
    assert client.get("/api/v1/tasks", headers=theirs).status_code == 401
    assert client.delete(f"/api/v1/keys/{new['id']}", headers=admin).status_code == 404


def test_the_keys_command_creates_lists_and_revokes(stack_env):
    env = child_env({**stack_env, "AUTH_MODE": "keys", "FLASK_APP": "run"})
    name = f"cli-{uuid.uuid4().hex[:8]}"

    def flask(*args):
        return subprocess.run(
            [sys.executable, "-m", "flask", "keys", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )

    made = flask("create", "--name", name)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert well_formed(key) and "store it now" in made.stderr
    listed = flask("list")
    line = next(line for line in listed.stdout.splitlines() if f" {name} " in line)
    assert key not in listed.stdout and key[:8] in line
    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    try:
        client = app.test_client()
        assert client.get("/api/v1/tasks", headers={"X-API-Key": key}).status_code == 200
        assert flask("revoke", line.split()[0]).returncode == 0
        app.extensions["tasker"].keys._verified.clear()  # another process: it would notice within 5 s
        assert client.get("/api/v1/tasks", headers={"X-API-Key": key}).status_code == 401
    finally:
        app.extensions["tasker"].db.dispose()


def test_quotas_per_owner(stack_env):
    app = build_app({**stack_env, "AUTH_MODE": "keys", "QUOTA_UNFINISHED_TASKS": "3", "QUOTA_SCHEDULES": "2"})
    try:
        keys = app.extensions["tasker"].keys
        mine = {"X-API-Key": keys.create(f"quota-{uuid.uuid4().hex[:8]}")[1]}
        other = {"X-API-Key": keys.create(f"quota-{uuid.uuid4().hex[:8]}")[1]}
        client = app.test_client()
        body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600}
        for _ in range(3):
            assert client.post("/api/v1/tasks", json=body, headers=mine).status_code == 202
        over = client.post("/api/v1/tasks", json=body, headers=mine)
        assert over.status_code == 429
        assert over.get_json()["code"] == "quota_exceeded"
        assert over.get_json()["details"] == {"quota": "unfinished_tasks", "limit": 3}
        assert client.post("/api/v1/tasks", json=body, headers=other).status_code == 202  # per owner
        # A finished task frees its place (seen at the next read of the count, within a second).
        first = client.get("/api/v1/tasks", headers=mine).get_json()["tasks"][0]
        assert client.post(f"/api/v1/tasks/{first['id']}/cancel", headers=mine).status_code == 200
        app.extensions["tasker"].tasks.quota._counts.clear()
        assert client.post("/api/v1/tasks", json=body, headers=mine).status_code == 202

        schedule = {"task": "sum", "parameters": {"a": 1, "b": 2}, "cron": "0 3 * * *"}
        for n in range(2):
            made = client.post("/api/v1/schedules", json=schedule | {"name": f"s{n}"}, headers=mine)
            assert made.status_code == 201
        over = client.post("/api/v1/schedules", json=schedule | {"name": "s2"}, headers=mine)
        assert over.status_code == 429 and over.get_json()["details"]["quota"] == "schedules"
    finally:
        app.extensions["tasker"].db.dispose()


def test_a_schedule_may_not_fire_more_often_than_the_operator_allows(stack_env):
    app = build_app({**stack_env, "SCHEDULE_MIN_INTERVAL_SECONDS": "300"})
    try:
        client = app.test_client()
        body = {"name": f"often-{uuid.uuid4().hex[:6]}", "task": "sum", "parameters": {"a": 1, "b": 2}}
        too_often = client.post("/api/v1/schedules", json=body | {"cron": "*/2 * * * *"})
        assert too_often.status_code == 400
        assert "once every 300 s" in too_often.get_json()["details"]["cron"][0]
        assert client.post("/api/v1/schedules", json=body | {"cron": "*/5 * * * *"}).status_code == 201
    finally:
        app.extensions["tasker"].db.dispose()


def test_only_allowed_models_and_token_counts_reach_openai(client):
    def ask(**parameters):
        return client.post(
            "/api/v1/tasks", json={"name": "query_chatgpt", "parameters": {"prompt": "hi"} | parameters}
        )

    refused = ask(model="gpt-5-expensive")
    assert refused.status_code == 400
    assert refused.get_json()["details"]["allowed_models"] == ["gpt-test", "gpt-other"]
    assert "gpt-test" in refused.get_json()["error"]
    too_many = ask(max_tokens=5000)
    assert too_many.status_code == 400
    assert too_many.get_json()["details"]["parameters"] == {"max_tokens": ["Must be at most 1024."]}
    schedule = client.post(
        "/api/v1/schedules",
        json={
            "name": "m",
            "task": "query_chatgpt",
            "parameters": {"prompt": "hi", "model": "o3"},
            "cron": "0 3 * * *",
        },
    )
    assert schedule.status_code == 400


def test_retention_deletes_old_finished_tasks_only(app, db):
    old_done = insert_task(db, status=TaskStatus.COMPLETED)
    old_failed = insert_task(db, status=TaskStatus.FAILED)
    recent_done = insert_task(db, status=TaskStatus.COMPLETED)
    old_pending = insert_task(db)
    make_old(db, recent_done, "completed_at", timedelta(days=1))
    for task_id in (old_done, old_failed, old_pending):
        make_old(db, task_id, "created_at", timedelta(days=40))
        make_old(db, task_id, "completed_at", timedelta(days=40))
    assert Retention(db, 30, batch=1).run() >= 2  # one row a batch: several short transactions
    assert row_of(db, old_done) is None and row_of(db, old_failed) is None
    assert row_of(db, recent_done) is not None and row_of(db, old_pending) is not None
    assert Retention(db, 0).run() == 0  # 0 keeps everything


def test_schedules_page_with_a_cursor(keyed):
    client = keyed.test_client()
    mine = auth(keyed, "bob")
    body = {"task": "sum", "parameters": {"a": 1, "b": 2}, "cron": "0 3 * * *"}
    made = [
        client.post("/api/v1/schedules", json=body | {"name": f"page-{n}"}, headers=mine).get_json()["id"]
        for n in range(3)
    ]
    first = client.get("/api/v1/schedules?limit=2", headers=mine).get_json()
    assert [s["id"] for s in first["schedules"]] == made[:0:-1] and first["next_cursor"]
    rest = client.get(f"/api/v1/schedules?limit=2&cursor={first['next_cursor']}", headers=mine).get_json()
    assert [s["id"] for s in rest["schedules"]] == made[:1] and rest["next_cursor"] is None


def test_retention_is_one_of_beats_housekeeping_jobs(app):
    jobs = {job.name: job for job in app.extensions["tasker"].housekeeping.jobs}
    assert jobs["retention"].interval == 3600
    assert jobs["retention"].run.__self__.days == 30  # TASK_RETENTION_DAYS's default


def test_owner_filters_are_names_not_arbitrary_text(keyed):
    """Found by the fuzzer: a NUL in ?owner= reached PostgreSQL, which refuses it (a 500)."""
    client = keyed.test_client()
    for path in ("/api/v1/tasks", "/api/v1/schedules"):
        response = client.get(f"{path}?owner=a%00b", headers=auth(keyed, "admin"))
        assert response.status_code == 400 and "owner" in response.get_json()["details"], path


def test_a_signed_out_dashboard_session_is_refused_wherever_it_is_replayed(keyed):
    """Sign-out ends the session on the server: the cookie, copied before, no longer works."""
    client = keyed.test_client()
    signed_in = client.post(
        "/dashboard/login", json={"key": keyed.test_keys["alice"], "next": "/dashboard/queues"}
    )
    assert signed_in.status_code == 200 and signed_in.get_json()["next"] == "/dashboard/queues"
    cookie = client.get_cookie("tasker_session")
    assert client.get("/api/v1/tasks").status_code == 200
    csrf = client.get("/").get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]
    assert client.post("/dashboard/logout", headers={"X-CSRF-Token": csrf}).status_code == 204
    thief = keyed.test_client()
    thief.set_cookie("tasker_session", cookie.value)
    assert thief.get("/api/v1/tasks").status_code == 401
    other_process = build_app({**keyed.test_env, "AUTH_MODE": "keys"}).test_client()  # not this one's cache
    other_process.set_cookie("tasker_session", cookie.value)
    assert other_process.get("/api/v1/tasks").status_code == 401


@pytest.mark.parametrize(
    "target",
    [
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "//evil.example",
        "https://evil.example/",
        "/dashboard/../\\evil",
        "/dashboard//evil.example",
    ],
)
def test_sign_in_sends_the_browser_to_this_dashboard_only(keyed, target):
    answer = keyed.test_client().post(
        "/dashboard/login", json={"key": keyed.test_keys["bob"], "next": target}
    )
    assert answer.status_code == 200 and answer.get_json()["next"] == "/"


def test_a_dashboard_session_lasts_its_lifetime_at_most(keyed):
    lifetime = keyed.permanent_session_lifetime
    keys = keyed.extensions["tasker"].keys
    from flask.sessions import SecureCookieSession

    session = SecureCookieSession()
    keys.start_session(session, keyed.test_keys["bob"])
    assert keys.session_valid(session, lifetime)
    session["issued"] -= int(lifetime.total_seconds()) + 1  # as if signed in a lifetime ago
    assert not keys.session_valid(session, lifetime)
    assert not keys.session_valid({"key": session["key"]}, lifetime)  # a cookie of before sign-out existed


@pytest.mark.parametrize("name", ["alice\n", "alice\r", "al ice", "ali\tce", "", "x" * 101])
def test_a_name_or_owner_is_the_whole_string_without_control_characters(keyed, name):
    """One rule (app/core/keys.py) for the API and the CLI: `$` no longer lets a final newline in."""
    admin = auth(keyed, "admin")
    for body in ({"name": name}, {"name": "ok-name", "owner": name}):
        answer = keyed.test_client().post("/api/v1/keys", json=body, headers=admin)
        assert answer.status_code == 400, (body, answer.get_json())
    runner = keyed.test_cli_runner()
    result = runner.invoke(args=["keys", "create", "--name", name or "''"])
    assert result.exit_code != 0 and "letters, digits" in result.output


@pytest.mark.parametrize(
    "limit", ["100 per second", "100/second\n", "0/second", "100/fortnight", "1/second;" * 11]
)
def test_the_cli_refuses_the_rate_limits_the_api_refuses(keyed, limit):
    admin = auth(keyed, "admin")
    body = {"name": f"limited-{uuid.uuid4().hex[:6]}", "rate_limit": limit}
    assert keyed.test_client().post("/api/v1/keys", json=body, headers=admin).status_code == 400
    result = keyed.test_cli_runner().invoke(
        args=["keys", "create", "--name", body["name"], "--rate-limit", limit]
    )
    assert result.exit_code != 0 and "100/second" in result.output


def test_refused_keys_are_limited_per_address_before_any_lookup(stack_env, monkeypatch):
    """Guessing keys from one address: after RATE_LIMIT_INVALID_KEYS refusals, a presented key is
    a 429 with Retry-After, not looked up; another address is not affected."""
    env = {
        **stack_env,
        "AUTH_MODE": "keys",
        "RATE_LIMIT_ENABLED": "true",
        "RATE_LIMIT_INVALID_KEYS": "5/minute",
    }
    app = build_app(env)
    client = app.test_client()
    guesser = {"REMOTE_ADDR": f"198.51.100.{uuid.uuid4().int % 250 + 1}"}
    for _ in range(5):
        guess = {"X-API-Key": new_key()}  # well formed: each one would be a lookup
        assert client.get("/api/v1/tasks", headers=guess, environ_base=guesser).status_code == 401
    lookups = []
    looked_up = key_model.by_hash
    monkeypatch.setattr(
        key_model, "by_hash", lambda conn, digest: lookups.append(digest) or looked_up(conn, digest)
    )
    refused = client.get("/api/v1/tasks", headers={"X-API-Key": new_key()}, environ_base=guesser)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert refused.get_json()["code"] == "too_many_requests" and lookups == []
    other = client.get(
        "/api/v1/tasks", headers={"X-API-Key": new_key()}, environ_base={"REMOTE_ADDR": "192.0.2.1"}
    )
    assert other.status_code == 401
    app.extensions["tasker"].db.dispose()


def test_metrics_with_keys_and_no_token_answer_the_private_network_only(stack_env):
    """Keys mode without METRICS_TOKEN: Prometheus inside (a private address, not through the
    proxy) scrapes; anyone through the proxy, or from a public address, is refused."""
    client = build_app({**stack_env, "AUTH_MODE": "keys"}).test_client()

    def scrape(peer: str, **headers: str) -> int:
        return client.get("/metrics", headers=headers, environ_base={"REMOTE_ADDR": peer}).status_code

    assert scrape("10.89.0.7") == 200 and scrape("127.0.0.1") == 200
    assert scrape("9.9.9.9") == 403
    assert scrape("127.0.0.1", **{"X-Forwarded-For": "9.9.9.9"}) == 403  # came through the proxy
    token = build_app({**stack_env, "AUTH_MODE": "keys", "METRICS_TOKEN": "m" * 32}).test_client()
    outside = {"REMOTE_ADDR": "9.9.9.9"}
    assert token.get("/metrics", environ_base=outside).status_code == 401
    authorized = token.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32}, environ_base=outside)
    assert authorized.status_code == 200


@pytest.mark.parametrize(
    "stack", ["real"], indirect=True
)  # a race on PostgreSQL (SQLite writes one at a time)
def test_quotas_hold_under_concurrent_clients_on_several_processes(stack_env):
    """32 clients at once over four API processes (four apps, four quota caches) on one database:
    schedules stop at exactly their quota (counted in the inserting transaction); unfinished
    tasks at most the submits in flight past theirs (the bound README states)."""
    env = {**stack_env, "AUTH_MODE": "keys", "QUOTA_UNFINISHED_TASKS": "100", "QUOTA_SCHEDULES": "20"}
    apps = [build_app(env) for _ in range(4)]
    key = {"X-API-Key": apps[0].extensions["tasker"].keys.create(f"race-{uuid.uuid4().hex[:8]}")[1]}
    clients, start = 32, threading.Barrier(32)
    made = {"tasks": 0, "schedules": 0}
    lock = threading.Lock()

    def client(n: int) -> None:
        http = apps[n % 4].test_client()
        start.wait(10)
        for m in range(2):
            body = {
                "name": f"race-{n}-{m}",
                "task": "sum",
                "parameters": {"a": 1, "b": 2},
                "cron": "0 3 * * *",
            }
            created = http.post("/api/v1/schedules", json=body, headers=key).status_code == 201
            with lock:
                made["schedules"] += created
        for _ in range(6):
            body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600}
            created = http.post("/api/v1/tasks", json=body, headers=key).status_code == 202
            with lock:
                made["tasks"] += created

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert made["schedules"] == 20, made
        assert 100 <= made["tasks"] <= 100 + clients, made
    finally:
        for app in apps:
            app.extensions["tasker"].db.dispose()


def test_revoking_an_owners_last_key_pauses_its_schedules_until_an_admin_resumes_them(keyed):
    client, admin = keyed.test_client(), auth(keyed, "admin")
    keys = keyed.extensions["tasker"].keys
    owner = f"leaver-{uuid.uuid4().hex[:6]}"
    first, second = (keys.create(f"{owner}-{n}", owner=owner) for n in (1, 2))
    body = {"name": "nightly", "task": "sum", "parameters": {"a": 1, "b": 2}, "cron": "0 3 * * *"}
    schedule = client.post("/api/v1/schedules", json=body, headers={"X-API-Key": first[1]}).get_json()
    once = client.delete(f"/api/v1/keys/{first[0]['id']}", headers=admin).get_json()
    assert once["schedules_paused"] == 0  # another key of the owner's is still there
    last = client.delete(f"/api/v1/keys/{second[0]['id']}", headers=admin).get_json()
    assert last["schedules_paused"] == 1 and last["revoked_at"]
    paused = client.get(f"/api/v1/schedules/{schedule['id']}", headers=admin).get_json()
    assert paused["enabled"] is False and paused["next_run_at"] is None
    resumed = client.patch(f"/api/v1/schedules/{schedule['id']}", json={"enabled": True}, headers=admin)
    assert resumed.status_code == 200 and resumed.get_json()["next_run_at"]


def test_a_workflow_counts_its_steps_against_the_owners_quota(stack_env):
    """Admitted as many tasks as it declares steps, WAITING ones unfinished too; a workflow that
    would pass the quota is refused whole, nothing of it written."""
    app = build_app({**stack_env, "AUTH_MODE": "keys", "QUOTA_UNFINISHED_TASKS": "5"})
    try:
        keys = app.extensions["tasker"].keys
        mine = {"X-API-Key": keys.create(f"quota-{uuid.uuid4().hex[:8]}")[1]}
        client = app.test_client()
        chain = {
            "name": "chain",
            "steps": [
                {"id": "a", "task": "process_data", "parameters": {"duration_seconds": 3600}},
                {"id": "b", "task": "sum", "after": ["a"], "parameters": {"a": 1, "b": 2}},
                {"id": "c", "task": "sum", "after": ["b"], "parameters": {"a": 1, "b": 2}},
            ],
        }
        first = client.post("/api/v1/workflows", json=chain, headers=mine)
        assert first.status_code == 202
        over = client.post("/api/v1/workflows", json=chain, headers=mine)
        assert over.status_code == 429 and over.get_json()["details"] == {
            "quota": "unfinished_tasks",
            "limit": 5,
        }
        listed = client.get("/api/v1/workflows", headers=mine).get_json()["workflows"]
        assert len(listed) == 1  # the refused one left nothing behind
        task = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 3600}
        assert client.post("/api/v1/tasks", json=task, headers=mine).status_code == 202  # 4 of 5
        cancelled = client.post(f"/api/v1/workflows/{first.get_json()['id']}/cancel", headers=mine)
        assert cancelled.status_code == 200  # its running step stops at its next step
    finally:
        app.extensions["tasker"].db.dispose()
