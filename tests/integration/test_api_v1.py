"""The v1 resource API against the real stacks."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from app.models import task as task_model
from app.models.task import TaskStatus, tasks
from tests.support import claim, insert_task, poll, row_of

SUM = {"name": "sum", "parameters": {"a": 2, "b": 3}}


def submit(client, body=SUM, **headers):
    return client.post("/api/v1/tasks", json=body, headers=headers)


def wait_done(client, task_id, seconds=20):
    response = client.get(f"/api/v1/tasks/{task_id}?wait={seconds}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def insert_row(db, status=TaskStatus.PENDING, name="sum_two_numbers", parameters=None):
    """A row in `status` that no message points at."""
    task_id = insert_task(db, name, parameters)
    if status == TaskStatus.STARTED:
        db.run(lambda c: claim(c, task_id))
    elif status == TaskStatus.RETRYING:
        db.run(lambda c: claim(c, task_id))
        db.run(lambda c: task_model.mark_retrying(c, task_id, "HTTP 503"))
    elif status in (TaskStatus.COMPLETED, TaskStatus.FAILED):
        db.run(lambda c: task_model.finish(c, task_id, status, None, "boom" if status == "FAILED" else None))
    return str(task_id)


def test_submit_returns_202_with_location_and_the_resource(client, worker):
    response = submit(client)
    assert response.status_code == 202
    task = response.get_json()
    assert response.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert task["name"] == "sum_two_numbers" and task["parameters"] == {"a": 2, "b": 3}
    assert task["status"] in ("PENDING", "STARTED", "COMPLETED")
    # warnings: while no worker's heartbeat is seen yet
    assert set(task) - {"warnings"} == {
        "id", "name", "parameters", "status", "result", "error", "attempts", "progress", "progress_message",
        "priority", "queue", "created_at", "started_at", "completed_at", "retry_of", "cancel_requested",
        "run_at", "schedule_id", "scheduled_for", "owner", "webhook", "retry_policy", "timeout_seconds",
        "tags", "workflow_id", "step",
    }  # fmt: skip
    done = wait_done(client, task["id"])
    assert (done["status"], done["result"], done["attempts"]) == ("COMPLETED", 5, 1)
    assert (
        done["created_at"].endswith("Z") and done["completed_at"] >= done["started_at"] >= done["created_at"]
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"name": "nope", "parameters": {}}, 400, "name"),
        ({"name": "sum", "parameters": {"a": "1", "b": 2}}, 400, "parameters"),
        ({"name": "sum", "parameters": [1, 2]}, 400, "parameters"),
        ({"parameters": {}}, 400, "name"),
        ({"name": "sum", "parameters": {"a": 1, "b": 2}, "queue": "x"}, 400, "queue"),
    ],
)
def test_submit_rejects_bad_input(client, body, status, field):
    response = submit(client, body)
    assert response.status_code == status
    assert field in response.get_json()["error"]
    assert field in response.get_json()["details"]


def test_statuses_are_accepted_in_any_case(client, db):
    failed = insert_later(db, TaskStatus.FAILED)
    assert failed in list_ids(client, status="failed", limit=200)
    assert failed in list_ids(client, status=["Failed", "pending"], limit=200)


def test_the_same_idempotency_key_and_body_returns_the_original_task(client, db):
    first = submit(client, SUM, **{"Idempotency-Key": "order-1-" + uuid.uuid4().hex})
    key = first.request.headers["Idempotency-Key"]
    again = submit(client, SUM, **{"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    other = submit(client, {"name": "sum", "parameters": {"a": 9, "b": 9}}, **{"Idempotency-Key": key})
    assert other.status_code == 409
    assert other.get_json()["details"]["task_id"] == first.get_json()["id"]


def test_twenty_concurrent_duplicates_make_one_task(app, db):
    key = "burst-" + uuid.uuid4().hex
    start = threading.Barrier(20)

    def post(_):
        client = app.test_client()
        start.wait()
        return submit(client, SUM, **{"Idempotency-Key": key})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(post, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
    assert len({r.get_json()["id"] for r in responses}) == 1
    count = db.run(lambda c: len(c.execute(tasks.select().where(tasks.c.idempotency_key == key)).all()))
    assert count == 1


def test_an_idempotency_key_is_forgotten_after_24_hours(client, db):
    key = "old-" + uuid.uuid4().hex
    first = submit(client, SUM, **{"Idempotency-Key": key}).get_json()["id"]
    db.run(
        lambda c: c.execute(
            tasks.update()
            .where(tasks.c.id == uuid.UUID(first))
            .values(created_at=task_model.database_now(c) - timedelta(hours=25))
        )
    )
    again = submit(client, SUM, **{"Idempotency-Key": key})
    assert again.status_code == 202 and again.get_json()["id"] != first


@pytest.mark.parametrize("key", ["", "x" * 201, "with space", "naïve"])
def test_a_malformed_idempotency_key_is_400(client, key):
    response = client.post(
        "/api/v1/tasks", json=SUM, headers={"Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["error"]


def test_wait_answers_as_soon_as_the_task_is_terminal(client, worker):
    task_id = submit(client).get_json()["id"]
    started = time.monotonic()
    assert wait_done(client, task_id, seconds=10)["status"] == "COMPLETED"
    assert time.monotonic() - started < 10


def test_wait_gives_the_current_state_when_time_is_up(client, db):
    task_id = insert_row(db)
    started = time.monotonic()
    assert wait_done(client, task_id, seconds=1)["status"] == "PENDING"
    assert time.monotonic() - started >= 1


@pytest.mark.parametrize("wait", ["-1", "31", "soon"])
def test_wait_out_of_range_is_400(client, db, wait):
    response = client.get(f"/api/v1/tasks/{insert_row(db)}?wait={wait}")
    assert response.status_code == 400 and "wait" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("path", "status"), [("0b6a2b8e-9a43-4b4c-8d5e-3b1f3f7c1a11", 404), ("not-a-uuid", 400), ("1", 400)]
)
def test_unknown_and_malformed_ids(client, path, status):
    for url in (f"/api/v1/tasks/{path}", f"/tasks/{path}/status", f"/tasks/{path}/result"):
        assert client.get(url).status_code == status
    for action in ("cancel", "retry"):
        assert client.post(f"/api/v1/tasks/{path}/{action}").status_code == status


def ids_of(page):
    return [task["id"] for task in page["tasks"]]


def test_pagination_is_stable_under_concurrent_inserts(client, db):
    since = db.run(task_model.database_now)
    original = set()
    for _ in range(5):  # 500 rows, in batches of 100 per transaction
        batch = [uuid.uuid4() for _ in range(100)]
        db.run(
            lambda c, b=batch: [
                task_model.insert(c, i, "sum_two_numbers", {"a": 1, "b": 1}, "default") for i in b
            ]
        )
        original |= {str(i) for i in batch}
    created_after = since.isoformat() if since.tzinfo else since.replace(tzinfo=UTC).isoformat()

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": 50, "created_after": created_after, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/tasks", query_string=query).get_json()
        seen += ids_of(page)
        pages += 1
        insert_row(db)  # a new task arrives between every two pages
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)), "a task appeared on two pages"
    assert original <= set(seen), "a task was skipped"
    assert pages >= 10


def list_ids(client, **query):
    response = client.get("/api/v1/tasks", query_string=query)
    assert response.status_code == 200, response.get_json()
    return ids_of(response.get_json())


def insert_later(db, *args, **kwargs):
    """insert_row, once the database clock has moved past the previous row (SQLite counts milliseconds)."""
    task_id = insert_row(db, *args, **kwargs)
    created = row_of(db, task_id).created_at
    poll(lambda: db.run(task_model.database_now).replace(tzinfo=None) > created.replace(tzinfo=None))
    return task_id


def test_list_is_newest_first_with_filters(client, db):
    since = db.run(task_model.database_now)
    created_after = (since if since.tzinfo else since.replace(tzinfo=UTC)).isoformat()
    failed = insert_later(db, TaskStatus.FAILED)
    letters = insert_later(db, name="find_longest_consecutive_letters", parameters={"string": "aa"})
    pending = insert_later(db)
    assert list_ids(client, created_after=created_after)[:3] == [pending, letters, failed]
    assert set(list_ids(client, status=["FAILED", "PENDING"], created_after=created_after)) == {
        failed,
        letters,
        pending,
    }
    assert list_ids(client, status="FAILED", created_after=created_after) == [failed]
    assert list_ids(client, name="find_longest_consecutive_letters", created_after=created_after) == [letters]
    assert list_ids(client, created_after=(datetime.now(UTC) + timedelta(days=1)).isoformat()) == []
    assert not set(list_ids(client, created_before=created_after, limit=5)) & {failed, letters, pending}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"status": "DONE"}, "status"),
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "WyJ4Il0"}, "cursor"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "0001-01-01T00:00:00+01:00"}, "created_after"),
        ({"created_before": "9999-12-31T23:59:59-14:00"}, "created_before"),
        ({"name": "a\x00b"}, "name"),
    ],
)
def test_list_rejects_bad_queries(client, query, field):
    response = client.get("/api/v1/tasks", query_string=query)
    assert response.status_code == 400
    assert field in response.get_json()["error"]


@pytest.mark.parametrize("status", [TaskStatus.PENDING, TaskStatus.RETRYING])
def test_cancel_before_start_is_immediate_and_the_worker_never_runs_it(client, app, db, worker, status):
    task_id = insert_row(db, status)
    response = client.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 200
    assert response.get_json()["status"] == "CANCELLED"
    app.extensions["celery"].send_task("tasker.sum_two_numbers", kwargs={"a": 1, "b": 2}, task_id=task_id)
    # Either the revoke reached the worker first, or the claim found the row CANCELLED.
    handled = (f"Discarding revoked task: tasker.sum_two_numbers[{task_id}]", f"task {task_id} is finished")
    poll(lambda: any(line in worker.log_path.read_text() for line in handled), what="the worker to skip it")
    row = row_of(db, task_id)
    assert (row.status, row.attempts, row.result) == ("CANCELLED", 0 if status == "PENDING" else 1, None)


def test_cancel_while_started_requests_it(client, db):
    task_id = insert_row(db, TaskStatus.STARTED)
    response = client.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 202
    assert response.get_json()["status"] == "STARTED" and response.get_json()["cancel_requested"] is True


@pytest.mark.parametrize("status", [TaskStatus.COMPLETED, TaskStatus.FAILED])
def test_cancel_of_a_finished_task_is_409(client, db, status):
    response = client.post(f"/api/v1/tasks/{insert_row(db, status)}/cancel")
    assert response.status_code == 409
    assert response.get_json()["details"]["status"] == status
    assert f"The task is {status}" in response.get_json()["error"]


def test_retry_of_a_failed_task_runs_a_new_one(client, db, worker):
    failed = insert_row(db, TaskStatus.FAILED, parameters={"a": 40, "b": 2})
    response = client.post(f"/api/v1/tasks/{failed}/retry")
    assert response.status_code == 201
    retry = response.get_json()
    assert response.headers["Location"] == f"/api/v1/tasks/{retry['id']}"
    assert retry["retry_of"] == failed and retry["id"] != failed
    assert (retry["name"], retry["parameters"]) == ("sum_two_numbers", {"a": 40, "b": 2})
    assert wait_done(client, retry["id"])["result"] == 42


def test_retry_of_a_cancelled_task_and_409_otherwise(client, db):
    cancelled = insert_row(db)
    client.post(f"/api/v1/tasks/{cancelled}/cancel")
    assert client.post(f"/api/v1/tasks/{cancelled}/retry").status_code == 201
    for status in (TaskStatus.PENDING, TaskStatus.COMPLETED):
        response = client.post(f"/api/v1/tasks/{insert_row(db, status)}/retry")
        assert response.status_code == 409 and response.get_json()["details"]["status"] == status


def test_task_types_list_every_type_with_its_json_schema(client):
    types = {t["name"]: t for t in client.get("/api/v1/task-types").get_json()["task_types"]}
    built_in = {
        "sum_two_numbers",
        "find_longest_consecutive_letters",
        "query_chatgpt",
        "weather",
        "process_data",
        "http_request",
        "start_workflow",
    }
    own = {"count_items", "add_tax", "flaky_lookup", "list_objects", "resize_image", "summarize"}  # mytasks
    effects = {"spread", "record", "total", "grouped", "paced"}  # tests/effects.py
    assert set(types) == built_in | own | effects
    assert {name for name, t in types.items() if t["module"] == "mytasks"} == own
    assert types["sum_two_numbers"]["aliases"] == ["sum"]
    assert types["query_chatgpt"]["queue"] == "external_api" and types["query_chatgpt"]["max_retries"] == 3
    number = {"type": "number", "minimum": -(2**53 - 1), "maximum": 2**53 - 1}
    assert types["sum_two_numbers"]["parameters"] == {
        "type": "object",
        "properties": {"a": number, "b": number},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    prompt = types["query_chatgpt"]["parameters"]["properties"]["prompt"]
    assert prompt["type"] == "string" and prompt["minLength"] == 1


def test_short_status_and_result_paths(client, worker):
    task_id = submit(client).get_json()["id"]
    wait_done(client, task_id)
    assert client.get(f"/tasks/{task_id}/status").get_json() == {
        "id": task_id, "status": "COMPLETED", "progress": None, "progress_message": None, "attempts": 1,
    }  # fmt: skip
    assert client.get(f"/tasks/{task_id}/result").get_json() == {
        "id": task_id, "status": "COMPLETED", "result": 5, "error": None,
    }  # fmt: skip


def test_a_trailing_slash_answers_as_the_canonical_path(client):
    """`/api/v1/tasks/` is `/api/v1/tasks`: the same handler, not a 404 nor a redirect that would
    lose a POST's body."""
    created = client.post("/api/v1/tasks/", json={"name": "sum", "parameters": {"a": 1, "b": 2}})
    assert created.status_code == 202, created.get_json()
    task_id = created.get_json()["id"]
    assert client.get(f"/api/v1/tasks/{task_id}/").get_json()["id"] == task_id
    assert client.get("/api/v1/tasks/?limit=1").status_code == 200
    assert client.get("/health/").status_code == 200
