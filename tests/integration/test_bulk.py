"""Bulk actions on every stack: 1,000 submits in one request (a bad item refuses only itself),
a bulk retry of every FAILED task a filter matches (once per Idempotency-Key), and a bulk cancel."""

from __future__ import annotations

import uuid

import pytest

from app.models import task as task_model
from tests.support import poll

pytestmark = pytest.mark.integration


def statuses(db, ids: list[str]) -> list[str]:
    found = db.run(lambda conn: task_model.statuses(conn, [uuid.UUID(i) for i in ids]))
    return [found.get(uuid.UUID(i)) for i in ids]


def all_ended(db, ids: list[str], timeout: float = 120) -> list[str]:
    def ended() -> list[str] | None:
        now = statuses(db, ids)
        return now if all(s in ("COMPLETED", "FAILED", "CANCELLED") for s in now) else None

    return poll(ended, timeout=timeout, interval=0.5, what=f"{len(ids)} tasks to end")


def test_a_thousand_submits_in_one_request_and_three_bad_items_refuse_only_themselves(client, worker, db):
    tag = f"bulk:{uuid.uuid4().hex[:12]}"
    tasks = [{"name": "sum", "parameters": {"a": i, "b": 1}, "tags": [tag]} for i in range(1000)]
    tasks[7] = {"name": "sum", "parameters": {"a": "seven", "b": 1}}
    tasks[500] = {"name": "no_such_type", "parameters": {}}
    tasks[999] = {"name": "sum", "parameters": {"a": 1, "b": 1}, "priority": "urgent"}
    answer = client.post("/api/v1/tasks/bulk", json={"tasks": tasks})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert (body["submitted"], body["failed"]) == (997, 3)
    results = body["results"]
    assert [r["index"] for r in results] == list(range(1000))
    errors = {r["index"]: r["error"] for r in results if "error" in r}
    assert sorted(errors) == [7, 500, 999]
    assert errors[7]["details"] == {"parameters": {"a": ["Must be a number (a string or a boolean is not)."]}}
    assert errors[500]["code"] == "unknown_task" and "name" in errors[500]["details"]
    assert "priority" in errors[999]["details"]
    ids = [r["id"] for r in results if "id" in r]
    assert len(ids) == 997 and {r["status"] for r in results if "id" in r} == {"PENDING"}
    assert all_ended(db, ids) == ["COMPLETED"] * 997  # every row had its message
    rows = db.run(lambda conn: task_model.rows(conn, [uuid.UUID(i) for i in ids]))
    assert sorted(row.result for row in rows) == sorted(i + 1 for i in range(1000) if i not in (7, 500, 999))

    for bad, field in (({"tasks": []}, "tasks"), ({"tasks": [{}] * 1001}, "tasks"), ({"items": []}, "items")):
        refused = client.post("/api/v1/tasks/bulk", json=bad)
        assert refused.status_code == 400 and field in refused.get_json()["details"]
    key = {"name": "sum", "parameters": {"a": 1, "b": 1}, "idempotency_key": f"k-{uuid.uuid4().hex}"}
    twice = client.post("/api/v1/tasks/bulk", json={"tasks": [key, key]}).get_json()["results"]
    assert twice[0]["id"] == twice[1]["id"] and (twice[0]["created"], twice[1]["created"]) == (True, False)


def test_a_bulk_retry_makes_one_task_per_failed_one_once_per_key(client, worker, db):
    tag = f"retry:{uuid.uuid4().hex[:12]}"
    failing = [
        {"name": "resize_image", "parameters": {"key": f"{i}.jpg", "fail": True}, "tags": [tag]}
        for i in range(500)
    ]
    made = client.post("/api/v1/tasks/bulk", json={"tasks": failing}).get_json()
    assert made["submitted"] == 500
    first = [r["id"] for r in made["results"]]
    assert all_ended(db, first) == ["FAILED"] * 500

    headers = {"Idempotency-Key": f"retry-{uuid.uuid4().hex}"}
    body = {"status": ["failed"], "tag": [tag]}
    retried = client.post("/api/v1/tasks/retry", json=body, headers=headers)
    assert retried.status_code == 200, retried.get_json()
    answer = retried.get_json()
    assert (answer["count"], answer["more"], len(set(answer["ids"]))) == (500, False, 500)
    again = client.post("/api/v1/tasks/retry", json=body, headers=headers).get_json()
    assert again == answer  # the same answer; nothing more made
    assert all_ended(db, answer["ids"]) == ["FAILED"] * 500  # they fail again, as they were made to
    assert client.post("/api/v1/tasks/retry", json=body, headers=headers).get_json() == answer
    rows = db.run(lambda conn: task_model.rows(conn, [uuid.UUID(i) for i in answer["ids"]]))
    assert {str(row.retry_of) for row in rows} == set(first) and len(rows) == 500
    other = client.post("/api/v1/tasks/retry", json={"tag": [tag]}, headers=headers)
    assert other.status_code == 409  # the key with another request

    wrong = client.post("/api/v1/tasks/retry", json={"status": ["COMPLETED"]})
    assert wrong.status_code == 400 and "status" in wrong.get_json()["details"]


def test_a_bulk_cancel_stops_what_the_filter_matches_and_nothing_else(client, worker, db):
    tag, other = f"cancel:{uuid.uuid4().hex[:12]}", f"keep:{uuid.uuid4().hex[:12]}"
    later = [
        {"name": "sum", "parameters": {"a": i, "b": 1}, "tags": [tag], "countdown": 600} for i in range(20)
    ]
    kept = [
        {"name": "sum", "parameters": {"a": i, "b": 1}, "tags": [other], "countdown": 600} for i in range(5)
    ]
    made = client.post("/api/v1/tasks/bulk", json={"tasks": later + kept}).get_json()
    ids = [r["id"] for r in made["results"]]
    assert statuses(db, ids) == ["SCHEDULED"] * 25
    answer = client.post("/api/v1/tasks/cancel", json={"tag": [tag], "status": ["scheduled"]}).get_json()
    assert answer["count"] == 20 and sorted(answer["ids"]) == sorted(ids[:20])
    assert statuses(db, ids) == ["CANCELLED"] * 20 + ["SCHEDULED"] * 5
    assert client.post("/api/v1/tasks/cancel", json={"tag": [tag]}).get_json()["count"] == 0
    assert client.post("/api/v1/tasks/cancel", json={"tag": [other]}).get_json()["count"] == 5
