"""A dependency that is down: 503 naming it, answers from the database when only the cache is down."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models.task import tasks
from tests.conftest import build_app
from tests.support import closed_port, wait_for_output

SUM = {"task_name": "sum", "task_parameters": {"a": 1, "b": 2}}


def count_rows(db) -> int:
    return db.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(tasks)).scalar_one())


def assert_unavailable(response, dependency):
    assert response.status_code == 503, response.get_json()
    body = response.get_json()
    assert body["code"] == "service_unavailable"
    assert body["details"]["dependency"] == dependency
    assert dependency in body["error"]
    text = response.get_data(as_text=True)
    for address in ("127.0.0.1", "localhost", "not-a-file.db"):  # where it lives is not the client's business
        assert address not in text, text


@pytest.fixture
def real_only(stack):
    if stack.embedded:
        pytest.skip("the embedded stack has no server to lose")


def down_database_url(stack, tmp_path) -> str:
    if stack.embedded:
        (tmp_path / "not-a-file.db").mkdir()  # SQLite cannot open a directory
        return f"sqlite:///{tmp_path / 'not-a-file.db'}"
    return f"postgresql://postgres@127.0.0.1:{closed_port()}/x"


def test_database_down_gives_503_naming_it(stack, tmp_path):
    app = build_app({**stack.env, "DATABASE_URL": down_database_url(stack, tmp_path)})
    client = app.test_client()
    assert_unavailable(client.post("/run-task", json=SUM), "database")
    assert_unavailable(
        client.get("/get-task-output?task_uuid=0b6a2b8e-9a43-4b4c-8d5e-3b1f3f7c1a11"), "database"
    )
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["details"]["database"] != "ok"
    assert "127.0.0.1" not in ready.get_data(as_text=True)
    assert ready.get_json()["details"]["broker"] == "ok"
    assert client.get("/health").status_code == 200


def down_broker_url(stack) -> str:
    """The stack's kind of broker, where nothing listens."""
    if stack.name == "rabbit":
        return f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    return f"redis://127.0.0.1:{closed_port()}/0"


def test_broker_down_at_submit_gives_503_and_keeps_no_row(real_only, stack, db):
    app = build_app({**stack.env, "CELERY_BROKER_URL": down_broker_url(stack)})
    client = app.test_client()
    before = count_rows(db)
    assert_unavailable(client.post("/run-task", json=SUM), "broker")
    assert count_rows(db) == before
    ready = client.get("/health/ready").get_json()
    assert ready["code"] == "not_ready" and ready["details"]["broker"] != "ok"
    assert_unavailable(client.get("/api/v1/queues"), "broker")
    assert client.get("/health/redis").status_code == (503 if stack.name == "real" else 200)


def test_a_message_rabbitmq_refuses_is_a_503_and_keeps_no_row(stack, db):
    """Publisher confirms: the 202 waits for RabbitMQ's ack, so a message the broker refuses (here
    a policy rejects every publish to the queue) is a 503 and no row, never an accepted task that
    nothing will run. Without confirms the publish would return at once and the submit be a 202."""
    if stack.name != "rabbit":
        pytest.skip("publisher confirms are RabbitMQ's")
    from tests.conftest import rabbitmqctl

    env = {**stack.env, **stack.new_broker()}
    vhost = env["CELERY_BROKER_URL"].rsplit("/", 1)[1]
    rabbitmqctl("set_policy", "-p", vhost, "--apply-to", "queues", "refuse", "^default$",
                '{"max-length": 0, "overflow": "reject-publish"}')  # fmt: skip
    app = build_app(env)
    client = app.test_client()
    before = count_rows(db)
    assert_unavailable(
        client.post("/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}}), "broker"
    )
    assert count_rows(db) == before
    rabbitmqctl("clear_policy", "-p", vhost, "refuse")
    assert (
        client.post("/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}}).status_code == 202
    )
    app.extensions["tasker"].db.dispose()


def test_redis_cache_down_answers_come_from_the_database(real_only, stack, worker):
    env = {**stack.env, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0"}
    app = build_app({**env, "CELERY_BROKER_URL": stack.config["CELERY_BROKER_URL"]})
    client = app.test_client()
    response = client.post("/run-task", json=SUM)
    assert response.status_code == 200
    task_id = response.get_json()["task_uuid"]
    assert wait_for_output(client, task_id) == {"status": "COMPLETED", "result": 3, "error": None}
    assert client.get(f"/get-task-output?task_uuid={task_id}").status_code == 200
    assert client.get("/health/ready").get_json()["checks"]["cache"].startswith("unavailable")


def test_killed_database_connections_are_replaced_without_a_restart(real_only, client, db, worker):
    assert client.post("/run-task", json=SUM).status_code == 200  # the pool now holds a connection
    killed = db.run(
        lambda c: c.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name = 'tasker'"
            )
        ).scalar_one()
    )
    assert killed >= 1
    response = client.post("/run-task", json=SUM)
    assert response.status_code == 200, response.get_json()
    assert wait_for_output(client, response.get_json()["task_uuid"])["result"] == 3
