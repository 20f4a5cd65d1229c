"""Workers that die, are killed mid-task, or are stopped (RELIABILITY.md scenarios 1, 2, 10, 11)."""

from __future__ import annotations

import os
import signal
import uuid

from app.models import task as task_model
from tests.faults.conftest import Fault
from tests.support import children_of, poll, row_of


def submit_many(fault: Fault, count: int, **parameters) -> list[str]:
    client = fault.client
    ids = []
    for _ in range(count):
        response = fault.submit("process_data", {"record_count": 10, **parameters}, client)
        assert response.status_code == 202, response.get_json()
        ids.append(response.get_json()["id"])
    return ids


def completed(fault: Fault, ids: list[str]) -> int:
    return sum(row.status == "COMPLETED" for row in fault.rows(ids))


def test_1_kill_9_the_whole_worker_with_100_tasks_in_flight(stack_fault):
    fault = stack_fault
    # No beat until the kill is over: its sweep requeues a STARTED row of a dead worker once it
    # is a second old, which on a loaded machine can come before the rows are read.
    first = fault.start_worker("first", concurrency=4)
    ids = submit_many(fault, 100, duration_seconds=0.3)

    keys = [uuid.UUID(task_id) for task_id in ids]

    def mid_run() -> bool:
        # One query for the hundred statuses, so the kill follows the look within milliseconds
        # (a row at a time took long enough on a loaded machine for every running task to end).
        found = list(fault.db.run(lambda c: task_model.statuses(c, keys)).values())
        return found.count("COMPLETED") >= 20 and found.count("STARTED") >= 3

    poll(mid_run, timeout=60, interval=0.02, what="20 tasks done and others running")
    fault.kill_hard(first)
    rows = fault.rows(ids)
    in_flight = {str(row.id) for row in rows if row.status == "STARTED"}
    assert in_flight, "the kill should catch tasks mid-run"
    assert sum(row.status != "COMPLETED" for row in rows) >= 50  # most were still waiting

    fault.start_beat()
    fault.start_worker("second", concurrency=4)
    rows = fault.wait_terminal(ids, timeout=120)
    assert [row.status for row in rows] == ["COMPLETED"] * 100
    assert all(row.result["records_processed"] == 10 for row in rows)
    rerun = {str(row.id) for row in rows if row.attempts > 1}
    assert rerun == in_flight  # exactly the ones the kill interrupted ran again
    assert {row.attempts for row in rows if str(row.id) in rerun} == {2}


def kill_pool_children(worker) -> None:
    for pid in children_of(worker.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_2_a_killed_pool_child_reruns_its_task_and_a_poison_task_stops_at_the_cap(stack_fault):
    fault = stack_fault
    fault.start_beat()
    worker = fault.start_worker("solo", concurrency=1)
    db = fault.db

    normal = submit_many(fault, 1, duration_seconds=3)[0]
    poll(lambda: (row_of(db, normal).progress or 0) >= 20, what="the task to be mid-run")
    kill_pool_children(worker)
    row = fault.wait_terminal([normal], timeout=60)[0]
    assert (row.status, row.attempts, row.result["records_processed"]) == ("COMPLETED", 2, 10)

    # A task whose pool child dies every time it runs (the test plays the poison).
    poison = submit_many(fault, 1, duration_seconds=60)[0]
    for attempt in (1, 2):  # TASK_MAX_DELIVERIES is 2 here
        poll(
            lambda a=attempt: (r := row_of(db, poison)).status == "STARTED" and r.attempts == a,
            timeout=60,
            what=f"attempt {attempt} to start",
        )
        kill_pool_children(worker)
    row = fault.wait_terminal([poison], timeout=60)[0]
    assert (row.status, row.attempts) == ("FAILED", 2)
    assert "started 2 times and its worker stopped while running it" in row.error
    # No loop: the worker goes on serving, and the poison task is never started again.
    after = submit_many(fault, 1, duration_seconds=0)[0]
    assert fault.wait_terminal([after], timeout=30)[0].status == "COMPLETED"
    assert row_of(db, poison).attempts == 2


def test_10_sigterm_during_long_tasks_loses_nothing(stack_fault):
    fault = stack_fault
    fault.start_beat()
    first = fault.start_worker("first", concurrency=2)
    ids = submit_many(fault, 4, duration_seconds=1.5)
    poll(lambda: sum(r.status == "STARTED" for r in fault.rows(ids)) == 2, what="two tasks running")
    first.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish first
    first.wait(timeout=30)
    fault.start_worker("second", concurrency=2)
    rows = fault.wait_terminal(ids, timeout=60)
    assert [(row.status, row.attempts) for row in rows] == [("COMPLETED", 1)] * 4


def test_11_a_cancelled_queued_task_never_runs_even_after_a_worker_restart(stack_fault):
    fault = stack_fault
    first = fault.start_worker("first", concurrency=1)
    blocker = submit_many(fault, 1, duration_seconds=2)[0]
    poll(lambda: row_of(fault.db, blocker).status == "STARTED", what="the blocker to run")
    queued = submit_many(fault, 1, duration_seconds=0)[0]
    response = fault.client.post(f"/api/v1/tasks/{queued}/cancel")
    assert response.status_code == 200 and response.get_json()["status"] == "CANCELLED"
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=30)
    fault.start_worker("second", concurrency=1)
    fault.start_beat()  # the sweep republishes whatever the first worker took with it
    later = submit_many(fault, 1, duration_seconds=0)[0]
    fault.wait_terminal([blocker, later], timeout=60)
    row = row_of(fault.db, queued)
    assert (row.status, row.attempts, row.started_at, row.result) == ("CANCELLED", 0, None, None)
    assert row_of(fault.db, blocker).status == "COMPLETED"


def test_8_a_duplicate_message_for_a_running_task_does_not_start_it_again(stack_fault):
    fault = stack_fault
    worker = fault.start_worker("pair", concurrency=2)
    task_id = submit_many(fault, 1, duration_seconds=2)[0]
    poll(lambda: row_of(fault.db, task_id).status == "STARTED", what="the task to run")
    # What a Redis visibility-timeout redelivery, or the sweep republishing, would send.
    fault.app.extensions["celery"].send_task(
        "tasker.process_data", kwargs={"duration_seconds": 2, "record_count": 10}, task_id=task_id
    )
    skipped = f"task {task_id} is STARTED; this message does not run it again"
    poll(lambda: skipped in worker.log_path.read_text(), what="the duplicate to be skipped")
    row = fault.wait_terminal([task_id], timeout=30)[0]
    assert (row.status, row.attempts) == ("COMPLETED", 1)
    assert row.worker.startswith("pair@")
