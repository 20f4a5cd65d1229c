"""process_data: progress that rises, cancellation between steps, failure on purpose."""

from __future__ import annotations

from tests.support import poll


def submit(client, **parameters):
    response = client.post("/api/v1/tasks", json={"name": "process_data", "parameters": parameters})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["id"]


def resource(client, task_id, wait=0):
    return client.get(f"/api/v1/tasks/{task_id}?wait={wait}").get_json()


def test_progress_rises_to_100_and_shows_in_both_apis(client, worker):
    task_id = submit(client, duration_seconds=3, record_count=400)
    seen = []

    def finished():
        task = resource(client, task_id)
        if task["progress"] is not None:
            seen.append(task["progress"])
        return task["status"] == "COMPLETED" and task

    task = poll(finished, timeout=30)
    assert any(0 < p < 100 for p in seen), seen
    assert seen == sorted(seen)
    assert (task["progress"], task["progress_message"]) == (100, "400 of 400 records")
    assert task["result"]["records_processed"] == 400 and task["result"]["steps"] == 20
    output = client.get(f"/get-task-output?task_uuid={task_id}").get_json()["task_output"]
    assert (output["progress"], output["progress_message"]) == (100, "400 of 400 records")


def test_cancel_mid_run_stops_within_one_step(client, worker):
    task_id = submit(client, duration_seconds=20, record_count=20)  # 20 steps of a second
    poll(lambda: (resource(client, task_id)["progress"] or 0) >= 10, timeout=30, what="some progress")
    response = client.post(f"/api/v1/tasks/{task_id}/cancel")
    assert response.status_code == 202 and response.get_json()["cancel_requested"] is True
    at_cancel = response.get_json()["progress"]
    task = resource(client, task_id, wait=10)
    assert task["status"] == "CANCELLED"
    assert task["error"] == "Cancelled while running, at the client's request."
    assert task["progress"] <= at_cancel + 5  # the step under way, and no more
    assert task["result"] is None


def test_fail_at_percent_fails_with_the_reason(client, worker):
    task_id = submit(client, duration_seconds=1, fail_at_percent=50)
    task = resource(client, task_id, wait=20)
    assert (task["status"], task["error"]) == ("FAILED", "Failed on purpose at 50% (fail_at_percent=50).")
    assert task["progress"] == 50
    retried = client.post(f"/api/v1/tasks/{task_id}/retry")
    assert retried.status_code == 201 and retried.get_json()["parameters"]["fail_at_percent"] == 50
