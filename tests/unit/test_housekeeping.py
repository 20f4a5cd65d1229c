"""The Scheduler, the recovery sweep and the housekeeping loop, on SQLite with a stand-in broker."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from app.core.beat.housekeeping import Housekeeping, Job
from app.core.beat.recovery import Recovery, Thresholds
from app.core.beat.scheduler import Scheduler
from app.core.endings import Endings
from app.core.errors import BrokerUnavailable, DatabaseUnavailable
from app.core.live.changes import ChangeFeed, Watch
from app.models import schedule as schedule_model
from app.models import task as task_model
from tests.support import REGISTRY, claim, insert_task, make_old, poll, row_of


@pytest.fixture
def broker(mocker):
    broker = mocker.Mock(spec=["enqueue", "running_tasks", "is_redis"])
    broker.running_tasks.return_value = {}
    return broker


def now(db):
    return db.run(task_model.database_now)


def test_the_scheduler_releases_due_tasks_and_fires_due_schedules(sqlite_db, broker):
    due = insert_task(sqlite_db, status="SCHEDULED", run_at=now(sqlite_db) - timedelta(seconds=1))
    later = insert_task(sqlite_db, status="SCHEDULED", run_at=now(sqlite_db) + timedelta(hours=1))
    schedule_id = uuid.uuid4()
    sqlite_db.run(
        lambda c: schedule_model.insert(
            c, schedule_id, name="s", task="sum", parameters={"a": 1, "b": 2}, cron="@hourly",
            timezone="UTC", priority=5, enabled=True, next_run_at=now(sqlite_db) - timedelta(seconds=1),
        )
    )  # fmt: skip
    assert Scheduler(sqlite_db, REGISTRY, broker).run_due() == {"fired": 1, "released": 1}
    assert (row_of(sqlite_db, due).status, row_of(sqlite_db, later).status) == ("PENDING", "SCHEDULED")
    published = [call.args[0].task_id for call in broker.enqueue.call_args_list]
    assert due in published and len(published) == 2
    schedule = sqlite_db.run(lambda c: schedule_model.get(c, schedule_id))
    assert schedule.next_run_at.minute == 0 and schedule.next_run_at > now(sqlite_db)


def test_one_pass_at_a_time(sqlite_db, broker):
    with sqlite_db.exclusive("tasker-scheduler") as held:
        assert held and Scheduler(sqlite_db, REGISTRY, broker).run_due() is None


def test_a_due_task_stays_scheduled_while_the_broker_is_down(sqlite_db, broker):
    due = insert_task(sqlite_db, status="SCHEDULED", run_at=now(sqlite_db) - timedelta(seconds=1))
    broker.enqueue.side_effect = BrokerUnavailable("down")
    with pytest.raises(BrokerUnavailable):
        Scheduler(sqlite_db, REGISTRY, broker).run_due()
    assert row_of(sqlite_db, due).status == "SCHEDULED"


def test_the_sweep_republishes_requeues_and_gives_up(sqlite_db, cache, broker):
    endings = Endings(sqlite_db, cache, Watch(ChangeFeed(), lambda ids: {}))
    recovery = Recovery(endings, REGISTRY, broker, Thresholds(pending_after=60, orphan_after=60))
    stranded = insert_task(sqlite_db)
    make_old(sqlite_db, stranded, "updated_at")
    dead, running, spent = insert_task(sqlite_db), insert_task(sqlite_db), insert_task(sqlite_db)
    for task_id in (dead, running, spent):
        sqlite_db.run(lambda c, t=task_id: claim(c, t, "w1@host"))
        make_old(sqlite_db, task_id, "started_at")
    sqlite_db.run(
        lambda c: c.execute(
            task_model.tasks.update().where(task_model.tasks.c.id == spent).values(attempts=3)
        )
    )
    broker.running_tasks.return_value = {"w1@host": {str(running)}}
    assert recovery.sweep() == {
        "republished": 1, "requeued": 1, "failed": 1, "deliveries": 0, "workflow_repairs": 0, "admitted": 0,
        "released": 0, "skipped": 0,
    }  # fmt: skip
    statuses = [row_of(sqlite_db, t).status for t in (stranded, dead, running, spent)]
    assert statuses == ["PENDING", "PENDING", "STARTED", "FAILED"]
    assert {call.args[0].task_id for call in broker.enqueue.call_args_list} == {stranded, dead}


def test_housekeeping_runs_each_job_again_and_survives_an_outage(mocker):
    runs = []

    def job():
        runs.append(1)
        if len(runs) == 1:
            raise DatabaseUnavailable("down")

    housekeeping = Housekeeping(mocker.Mock(), [Job("test", 0.01, job)])
    housekeeping.start()
    poll(lambda: len(runs) >= 3, what="three runs")
    housekeeping.stop()


def test_each_pass_is_reported_with_its_counts_and_a_skipped_one_is_not(mocker):
    outcomes = iter([{"republished": 2, "skipped": 0}, {"republished": 0, "skipped": 1}, 7])
    reported = []

    def job():
        return next(outcomes, None)

    housekeeping = Housekeeping(
        mocker.Mock(), [Job("sweep", 0.01, job)], report=lambda j, counts: reported.append((j.name, counts))
    )
    housekeeping.start()
    poll(lambda: len(reported) >= 2, what="two reported passes")
    housekeeping.stop()
    # The pass another beat held the lock for (skipped) and a None outcome are not reported.
    assert reported[:2] == [("sweep", {"republished": 2}), ("sweep", {"done": 7})]
