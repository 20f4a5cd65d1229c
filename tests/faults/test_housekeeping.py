"""Housekeeping runs in beat itself: long tasks filling every worker process cannot delay it."""

from __future__ import annotations

from datetime import timedelta

from tests.support import insert_task, make_old, poll, row_of


def test_a_due_task_is_published_on_time_and_the_sweep_runs_while_every_process_is_busy(stack_fault):
    fault = stack_fault
    beat = fault.start_beat()
    fault.start_worker("busy", concurrency=2)
    long_ids = [fault.submit("process_data", {"duration_seconds": 30}).get_json()["id"] for _ in range(2)]
    poll(lambda: all(row.status == "STARTED" for row in fault.rows(long_ids)), what="both processes busy")

    body = {"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 2}
    due_id = fault.client.post("/api/v1/tasks", json=body).get_json()["id"]
    stranded = insert_task(fault.db)  # a PENDING row whose message was lost an hour ago
    make_old(fault.db, stranded, "updated_at")

    released = poll(lambda: (row := row_of(fault.db, due_id)).status == "PENDING" and row, what="the release")
    late = (released.updated_at - released.run_at).total_seconds()
    assert 0 <= late < 2, f"published {late:.2f} s after its time"
    poll(lambda: "republished" in beat.log_path.read_text(), what="the sweep to republish the lost row")
    assert row_of(fault.db, stranded).updated_at > released.run_at - timedelta(minutes=1)
    assert all(row.status == "STARTED" for row in fault.rows(long_ids))  # the workers were busy throughout
