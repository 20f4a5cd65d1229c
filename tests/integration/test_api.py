"""The reference endpoints end to end: Flask app -> PostgreSQL -> Redis broker -> real worker."""

from __future__ import annotations

import json
import uuid

import pytest

from app.models.task import tasks
from tests.support import row_of, wait_for_output


def submit(client, name, parameters):
    response = client.post("/run-task", json={"task_name": name, "task_parameters": parameters})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"task_uuid"}
    return str(uuid.UUID(body["task_uuid"]))


@pytest.mark.parametrize(
    ("name", "parameters", "expected"),
    [
        ("sum_two_numbers", {"a": 5, "b": 10}, 15),
        ("sum", {"a": -2, "b": 0.5}, -1.5),
        ("sum_two_numbers", {"a": 2**53 - 1, "b": 2**53 - 1}, 2**54 - 2),
        ("find_longest_consecutive_letters", {"string": "aaabbccccdd"}, 4),
        ("find_longest_consecutive_letters", {"string": ""}, 0),
        ("find_longest_consecutive_letters", {"string": "aAAbBBB"}, 3),
        ("find_longest_consecutive_letters", {"string": "ééé🙂🙂"}, 3),
    ],
)
def test_task_runs_to_completion(client, worker, name, parameters, expected):
    task_id = submit(client, name, parameters)
    output = wait_for_output(client, task_id)
    assert output == {"status": "COMPLETED", "result": expected, "error": None}
    assert type(output["result"]) is type(expected)


def test_sum_of_two_integers_is_an_integer_in_the_raw_json(client, worker):
    task_id = submit(client, "sum", {"a": 1, "b": 2})
    wait_for_output(client, task_id)
    raw = client.get(f"/get-task-output?task_uuid={task_id}").get_data(as_text=True)
    assert '"result":3,' in raw.replace(" ", "")


def test_row_records_the_lifecycle(client, worker, db):
    task_id = submit(client, "sum", {"a": 1, "b": 1})
    wait_for_output(client, task_id)
    row = row_of(db, task_id)
    assert row.name == "sum_two_numbers"  # the alias is stored under the canonical name
    assert row.parameters == {"a": 1, "b": 1}
    assert (row.status, row.result, row.attempts, row.queue) == ("COMPLETED", 2, 1, "default")
    assert row.created_at <= row.started_at <= row.completed_at


def test_unknown_task_uuid_is_404(client):
    response = client.get(f"/get-task-output?task_uuid={uuid.uuid4()}")
    assert response.status_code == 404
    assert response.get_json()["error"] == "Task not found"
    assert response.get_json()["code"] == "not_found"


def test_finished_output_is_read_from_the_cache_first(client, worker, db):
    task_id = submit(client, "sum", {"a": 20, "b": 22})
    assert wait_for_output(client, task_id)["result"] == 42
    db.run(lambda c: c.execute(tasks.delete().where(tasks.c.id == uuid.UUID(task_id))))
    response = client.get(f"/get-task-output?task_uuid={task_id}")
    assert response.status_code == 200
    assert response.get_json()["task_output"]["result"] == 42


def test_health(client, worker):
    assert client.get("/health").get_json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.get_json()
    checks = ready.get_json()["checks"]
    assert (checks["database"], checks["broker"], checks["cache"]) == ("ok", "ok", "ok")
    assert checks["workers"] >= 1


def test_response_is_json_with_the_right_content_type(client):
    response = client.post("/run-task", json={"task_name": "nope", "task_parameters": {}})
    assert response.mimetype == "application/json"
    json.loads(response.get_data())
