"""The dashboard in a real browser (Debian's chromium driven by playwright): submit from the form
and watch the progress bar, cancel, field errors, schedules; offline and without console errors.
Keys mode: sign in once, a session cookie that is HttpOnly and SameSite=Strict, CSRF enforced.

`make screenshots` runs the screenshot test with SCREENSHOTS_DIR=docs/screenshots."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from app.models.migrate import upgrade
from config import load_config
from tests.conftest import build_app
from tests.integration.conftest import serving
from tests.support import Receiver, poll

pytestmark = pytest.mark.integration


@pytest.fixture
def page(browser, base):
    """A page that records every request leaving Tasker and every console error."""
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.foreign, page.errors = [], []
    page.on("request", lambda r: None if r.url.startswith((base, "data:")) else page.foreign.append(r.url))
    page.on("console", lambda m: page.errors.append(m.text) if _console_error(m) else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    yield page
    assert page.foreign == [], f"requests left the host: {page.foreign}"
    assert page.errors == [], f"console errors: {page.errors}"
    page.close()


def _console_error(message: Any) -> bool:
    # Chromium logs each 4xx answer as a console error; the tests provoke some on purpose.
    expected = message.text.startswith("Failed to load resource: the server responded with a status of 4")
    return message.type == "error" and not expected


def progress(page: Any) -> int:
    return int(page.locator("#progress").get_attribute("value") or 0)


def test_submit_process_data_and_watch_it_finish_without_a_reload(page, base, worker):
    page.goto(f"{base}/dashboard/submit")
    page.select_option("#task-type", "process_data")
    page.fill("#f-e-p-duration_seconds", "2")
    page.fill("#f-e-p-record_count", "50")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/tasks/[0-9a-f-]{36}$"))
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    seen = set()
    deadline = time.monotonic() + 30
    while page.locator("#status").inner_text() != "COMPLETED":
        assert time.monotonic() < deadline, f"not COMPLETED in 30 s; progress seen: {seen}"
        seen.add(progress(page))
        page.wait_for_timeout(50)
    assert progress(page) == 100
    assert any(0 < value < 100 for value in seen), f"the bar never showed a step between: {seen}"
    assert '"records_processed": 50' in page.locator("#outcome").inner_text()
    assert page.evaluate("window.sameDocument") is True


def test_a_users_own_type_from_the_form_with_tags_and_the_tag_filter(page, base, worker):
    tag = f"customer:{uuid.uuid4().hex[:8]}"
    page.goto(f"{base}/dashboard/submit")
    page.select_option("#task-type", "add_tax")  # from examples/mytasks, by its type hints
    assert "Add tax to an amount" in page.locator("#task-description").inner_text()
    page.fill("#f-e-p-amount", "100")
    page.fill("#f-tags", f"{tag} env:test")
    page.fill("#f-timeout_seconds", "10")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/dashboard/tasks/[0-9a-f-]{36}$"))
    task_id = page.url.rsplit("/", 1)[1]
    page.locator("#status:has-text('COMPLETED')").wait_for(timeout=20_000)
    assert page.locator("#outcome").inner_text() == "120"
    assert page.locator("#tags .tag").all_inner_texts() == [tag, "env:test"]

    requests.post(f"{base}/api/v1/tasks", json={"name": "add_tax", "parameters": {"amount": 1}}, timeout=10)
    page.goto(f"{base}/?tag={tag}")
    page.locator(f"tr[data-id='{task_id}']").wait_for()
    assert page.locator("#task-rows tr").count() == 1  # the untagged task is not listed
    assert page.locator("#tag-filter").input_value() == tag
    page.fill("#tag-filter", "")
    page.press("#tag-filter", "Enter")
    page.locator("#task-rows tr").nth(1).wait_for()  # every task again, the untagged one too


def test_the_form_sends_a_webhook_a_retry_policy_and_an_idempotency_key(page, base, worker):
    receiver = Receiver().start()
    try:
        key = f"form-{uuid.uuid4().hex}"
        page.goto(f"{base}/dashboard/submit")
        page.select_option("#task-type", "sum_two_numbers")
        page.fill("#f-e-p-a", "2")
        page.fill("#f-e-p-b", "3")
        page.fill("#f-webhook-url", "http://localhost:9/hook")  # a local name nobody opened
        page.click("button[type=submit]")
        page.locator("#e-webhook-url").wait_for(state="visible")  # the API's error, under the field
        assert "WEBHOOK_ALLOWED_HOSTS" in page.locator("#e-webhook-url").inner_text()
        page.fill("#f-webhook-url", receiver.url("/form"))
        page.uncheck("input[name=webhook_events][value=cancelled]")
        page.fill("#f-retry_policy-max_retries", "2")
        page.select_option("#f-retry_policy-on", "transient")
        page.fill("#f-idempotency-key", key)
        page.click("button[type=submit]")
        page.wait_for_url(re.compile(r"/dashboard/tasks/[0-9a-f-]{36}$"))
        task_id = page.url.rsplit("/", 1)[1]
        page.locator("#status:has-text('COMPLETED')").wait_for(timeout=20_000)
        facts = page.locator("#timeline").inner_text()
        assert "(completed, failed)" in facts and "up to 2 retries, on transient failures" in facts
        (delivered,) = receiver.got(1)
        assert json.loads(delivered["body"])["task"]["id"] == task_id
        task = requests.get(f"{base}/api/v1/tasks/{task_id}", timeout=10).json()
        assert task["webhook"]["events"] == ["completed", "failed"]
        assert task["retry_policy"] == {"max_retries": 2, "on": "transient"}

        page.go_back()  # the same form again, with the same key: the same task, nothing new
        page.wait_for_url(re.compile(r"/dashboard/submit$"))
        page.select_option("#task-type", "sum_two_numbers")
        for field, value in (("#f-e-p-a", "2"), ("#f-e-p-b", "3"), ("#f-webhook-url", receiver.url("/form"))):
            page.fill(field, value)
        page.uncheck("input[name=webhook_events][value=cancelled]")
        page.fill("#f-retry_policy-max_retries", "2")
        page.select_option("#f-retry_policy-on", "transient")
        page.fill("#f-idempotency-key", key)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/dashboard/tasks/{task_id}")
    finally:
        receiver.stop()


def test_cancel_a_running_task_from_its_page(page, base, worker):
    body = {"name": "process_data", "parameters": {"duration_seconds": 60, "record_count": 600}}
    task = requests.post(f"{base}/api/v1/tasks", json=body, timeout=10).json()
    page.goto(f"{base}/dashboard/tasks/{task['id']}")
    page.locator("#status:text-is('STARTED')").wait_for(timeout=20_000)
    before = [page.locator(part).bounding_box() for part in ("#status", "#progress", "#cancel")]
    page.focus("#cancel")
    page.keyboard.press("Enter")  # the buttons work from the keyboard
    page.locator("#status:text-is('CANCELLED')").wait_for(timeout=20_000)
    after = [page.locator(part).bounding_box() for part in ("#status", "#progress", "#cancel")]
    assert after == before, "the page moved when the status changed"
    assert requests.get(f"{base}/api/v1/tasks/{task['id']}", timeout=10).json()["status"] == "CANCELLED"
    assert page.locator("#retry").is_enabled()


def test_a_task_waiting_for_a_slot_of_its_key_says_so_until_it_holds_one(page, base, worker):
    count = int(uuid.uuid4().int % 10**6) + 10**6  # the key: a process_data of this record_count
    body = {"name": "process_data", "parameters": {"duration_seconds": 60, "record_count": count},
            "concurrency": {"key": {"$param": "/record_count"}, "limit": 1}}  # fmt: skip
    first, second = (requests.post(f"{base}/api/v1/tasks", json=body, timeout=10).json() for _ in range(2))
    try:
        page.goto(f"{base}/dashboard/tasks/{second['id']}")
        key = f"process_data:owner=default:/record_count={count}"
        page.locator(f"#timeline dd:text-is('{key} · limit 1 · waits for a slot')").wait_for(timeout=10_000)
        requests.post(f"{base}/api/v1/tasks/{first['id']}/cancel", timeout=10)
        page.locator("#status:text-is('STARTED')").wait_for(timeout=20_000)
        page.locator(f"#timeline dd:text-is('{key} · limit 1 · holds slot 0')").wait_for(timeout=10_000)
    finally:
        for task in (first, second):
            requests.post(f"{base}/api/v1/tasks/{task['id']}/cancel", timeout=10)


def test_a_bad_field_shows_the_apis_error_next_to_it(page, base, stack):
    page.goto(f"{base}/dashboard/submit")
    # A priority the broker cannot honour is said so beside the field (the embedded stack's).
    assert page.locator("#no-priorities").count() == (1 if stack.embedded else 0)
    page.select_option("#task-type", "sum_two_numbers")
    page.fill("#f-e-p-b", "2")  # a is missing
    page.fill("#f-priority", "12")
    page.click("button[type=submit]")
    page.locator("#e-priority").wait_for(state="visible")  # the request's options are checked first
    assert "0 to 9" in page.locator("#e-priority").inner_text()
    page.fill("#f-priority", "5")
    page.click("button[type=submit]")
    error = page.locator("#e-p-a")
    error.wait_for(state="visible")
    assert "Missing data for required field" in error.inner_text()
    assert page.locator("#f-e-p-a").get_attribute("aria-invalid") == "true"
    assert page.locator("#e-priority").is_hidden()
    assert page.url.endswith("/dashboard/submit")


def test_a_schedule_created_from_the_page_appears_with_its_next_fire_times(page, base):
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    page.goto(f"{base}/dashboard/schedules")
    page.fill("#s-cron", "61 * * * *")
    page.locator("#se-cron").wait_for(state="visible")  # the server's preview names the field
    page.fill("#s-cron", "30 2 * * *")
    page.locator("#cron-preview li:nth-child(5)").wait_for()
    assert page.locator("#cron-preview li").count() == 5
    page.fill("#s-name", name)
    page.select_option("#s-task", "sum_two_numbers")
    page.fill("#s-parameters", '{"a": 1, "b": 2}')
    page.click("#schedule-form button[type=submit]")
    row = page.locator(f"#schedule-rows tr:has-text('{name}')")
    row.wait_for()
    assert "30 2 * * *" in row.inner_text()
    row.get_by_role("button", name="Pause").click()
    page.locator(f"#schedule-rows tr:has-text('{name}') td[data-label='State']:text-is('paused')").wait_for()
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete the schedule ...?"
    page.locator(f"#schedule-rows tr:has-text('{name}')").get_by_role("button", name="Delete").click()
    page.locator(f"#schedule-rows tr:has-text('{name}')").wait_for(state="detached")


@pytest.fixture
def own_tasker(tmp_path) -> Iterator[tuple[Any, str]]:
    """A Tasker with a database of its own (embedded): a scheduler pass there fires nothing of
    another test's."""
    env = {"TASKER_DATA_DIR": str(tmp_path)}
    engine = sa.create_engine(load_config("testing", env)["DATABASE_URL"])
    upgrade(engine)
    engine.dispose()
    app = build_app(env)
    with serving(app) as url:
        yield app, url
    app.extensions["tasker"].db.dispose()


def test_tasks_picked_in_the_list_are_cancelled_and_a_types_failures_retried_at_once(browser, own_tasker):
    """The list's checkboxes: the picked tasks cancelled in one click; with a type chosen, every
    failed task of that type retried in one request (POST /api/v1/tasks/retry), no other type's."""
    app, base = own_tasker
    callbacks = app.extensions["tasker"].callbacks

    def submit(name: str, parameters: dict, **extra: Any) -> dict:
        body = {"name": name, "parameters": parameters} | extra
        return requests.post(f"{base}/api/v1/tasks", json=body, timeout=10).json()

    later = [submit("sum", {"a": n, "b": 1}, countdown=600) for n in range(2)]
    failed = [submit("process_data", {"duration_seconds": 1}) for _ in range(3)]
    other = submit("sum", {"a": 9, "b": 9})
    for task in [*failed, other]:
        callbacks.record_failure(uuid.UUID(task["id"]), "upstream down")
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    page.on("dialog", lambda dialog: dialog.accept())  # "Retry every failed process_data task ...?"
    try:
        page.goto(f"{base}/?status=SCHEDULED")
        for task in later:
            page.locator(f"tr[data-id='{task['id']}']").wait_for()
        page.check("#pick-all")
        assert page.locator("#selected-count").inner_text() == "2 selected"
        assert page.locator("#retry-selected").is_disabled()  # nothing picked has ended
        page.click("#cancel-selected")
        page.locator("#notice:has-text('2 cancelled.')").wait_for()
        statuses = {
            requests.get(f"{base}/api/v1/tasks/{t['id']}", timeout=10).json()["status"] for t in later
        }
        assert statuses == {"CANCELLED"}

        page.goto(f"{base}/?name=process_data")
        page.locator("#retry-failed-type:has-text('Retry all failed process_data')").click()
        page.locator("#notice:has-text('3 failed process_data tasks retried.')").wait_for()
    finally:
        page.close()
    retries = requests.get(f"{base}/api/v1/tasks?limit=100", timeout=10).json()["tasks"]
    assert sorted(t["retry_of"] for t in retries if t["retry_of"]) == sorted(t["id"] for t in failed)


def test_a_schedule_shows_both_zones_is_edited_in_place_and_links_to_its_runs(browser, own_tasker):
    """A schedule of Tokyo seen from New York: its fire times in both zones, labelled; edited from
    its row; its Runs link lists the tasks it made, and only those."""
    app, base = own_tasker
    name = f"tokyo-{uuid.uuid4().hex[:6]}"
    body = {
        "name": name,
        "task": "sum",
        "parameters": {"a": 1, "b": 2},
        "cron": "30 2 * * *",
        "timezone": "Asia/Tokyo",
    }
    schedule = requests.post(f"{base}/api/v1/schedules", json=body, timeout=10).json()
    context = browser.new_context(
        timezone_id="America/New_York", locale="en-US", viewport={"width": 1100, "height": 760}
    )
    page = context.new_page()
    try:
        page.goto(f"{base}/dashboard/schedules")
        row = page.locator(f"#schedule-rows tr[data-id='{schedule['id']}']")
        there, here = row.locator(".when-there").inner_text(), row.locator(".when-here").inner_text()
        assert "2:30 AM" in there and there.endswith("Asia/Tokyo"), there
        assert "12:30 PM" in here and here.endswith("your time"), here  # 17:30 UTC, the day before
        page.fill("#s-timezone", "Asia/Tokyo")
        page.fill("#s-cron", "0 9 * * 1")
        page.locator("#cron-preview li:has-text('9:00 AM Asia/Tokyo')").first.wait_for()
        first = page.locator("#cron-preview li").first.inner_text()
        assert "9:00 AM Asia/Tokyo" in first and "7:00 PM your time" in first, first

        row.get_by_role("button", name="Edit").click()
        assert page.locator("#schedule-form-title").inner_text() == f"Edit the schedule {name}"
        assert page.locator("#s-cron").input_value() == "30 2 * * *"
        page.fill("#s-cron", "45 3 * * *")
        page.fill("#s-tags", "report:nightly")
        page.click("#schedule-save")
        page.locator(f"#schedule-rows tr[data-id='{schedule['id']}'] td:has-text('45 3 * * *')").wait_for()
        assert page.locator("#schedule-form-title").inner_text() == "New schedule"
        changed = requests.get(f"{base}/api/v1/schedules/{schedule['id']}", timeout=10).json()
        assert (changed["cron"], changed["tags"], changed["name"]) == ("45 3 * * *", ["report:nightly"], name)

        # One run, fired by the scheduler a second after its time; another task that is not its.
        due = datetime.fromisoformat(changed["next_run_at"].replace("Z", "+00:00")) + timedelta(seconds=1)
        poll(lambda: app.extensions["tasker"].scheduler.run_due(due), what="the scheduler's lock")
        requests.post(
            f"{base}/api/v1/tasks", json={"name": "sum", "parameters": {"a": 5, "b": 5}}, timeout=10
        )
        (run,) = requests.get(f"{base}/api/v1/tasks?schedule_id={schedule['id']}", timeout=10).json()["tasks"]
        page.locator(f"#schedule-rows tr[data-id='{schedule['id']}']").get_by_role(
            "link", name="Runs"
        ).click()
        page.wait_for_url(f"{base}/?schedule_id={schedule['id']}")
        page.locator(f"#task-rows tr[data-id='{run['id']}']").wait_for()
        assert page.locator("#task-rows tr").count() == 1
        assert name in page.locator("#schedule-filter").inner_text()
    finally:
        context.close()
        requests.delete(f"{base}/api/v1/schedules/{schedule['id']}", timeout=10)


def test_the_list_updates_live_and_queues_show(page, base, worker):
    page.goto(f"{base}/?name=sum_two_numbers")
    page.locator("#live:has-text('live')").wait_for()
    task = requests.post(
        f"{base}/api/v1/tasks", json={"name": "sum", "parameters": {"a": 4, "b": 5}}, timeout=10
    ).json()
    page.locator(f"tr[data-id='{task['id']}'] .badge:has-text('COMPLETED')").wait_for(timeout=20_000)
    page.goto(f"{base}/dashboard/queues")
    page.locator("#queue-rows tr").first.wait_for()
    assert page.locator("#chart rect").count() > 0
    # Pause the queue from its row, submit while it is paused, resume: the task waited, then ran.
    row = page.locator("#queue-rows tr", has_text="default")
    try:
        row.get_by_role("button", name="Pause default").click()
        row.locator(".queue-state:has-text('paused')").wait_for()
        held = requests.post(
            f"{base}/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 1}}, timeout=10
        ).json()
        assert held["waiting_for"] == {"queue_paused": "default"}
        row.get_by_role("button", name="Resume default").click()
        page.locator("#notice:has-text('Queue default resumed')").wait_for()
        row.locator(".queue-state:has-text('running')").wait_for()
    finally:
        requests.post(f"{base}/api/v1/queues/default/resume", timeout=10)
    done = requests.get(f"{base}/api/v1/tasks/{held['id']}?wait=20", timeout=30).json()
    assert done["status"] == "COMPLETED"


@pytest.mark.parametrize("width", [375, 1100], ids=["phone", "desktop"])
def test_every_page_fits_the_screen_and_the_task_list_shows_each_status_whole(page, base, width):
    """At a phone's width and a desktop's nothing scrolls sideways, tables included; the task list
    keeps its id, type and status columns whole (a desktop shows progress and time too)."""
    for name in ("sum_two_numbers", "process_data"):
        requests.post(f"{base}/api/v1/tasks", json={"name": name, "parameters": {}}, timeout=10)
    requests.post(f"{base}/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}}, timeout=10)
    page.set_viewport_size({"width": width, "height": 740})
    for path in (
        "/",
        "/dashboard/submit",
        "/dashboard/schedules",
        "/dashboard/queues",
        "/dashboard/workflows",
    ):
        page.goto(f"{base}{path}")
        page.locator("h1").wait_for()
        if path == "/":
            page.locator("#task-rows tr").first.wait_for()
        width_used = page.evaluate("document.documentElement.scrollWidth")
        assert width_used <= width, f"{path} is {width_used} px wide on a {width} px screen"
        for wrap in page.locator(".table-wrap").all():
            scroll, client = wrap.evaluate("w => [w.scrollWidth, w.clientWidth]")
            assert scroll <= client, f"a table of {path} scrolls sideways at {width} px ({scroll} > {client})"
    page.goto(f"{base}/")
    page.locator("#task-rows tr .badge:not(:empty)").first.wait_for()
    shown = [th for th in page.locator("table.tasks thead th").all() if th.is_visible()]
    assert [th.inner_text() for th in shown][:3] == ["Task", "Type", "Status"]
    assert len(shown) == (3 if width < 600 else 5)
    for badge in page.locator("#task-rows .badge").all():
        box = badge.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width, "a status is off the screen"
        inner, outer = badge.evaluate("b => [b.scrollWidth, b.parentElement.clientWidth]")
        assert inner <= outer, f"the status {badge.inner_text()} is cut off ({inner} > {outer} px)"


def test_screenshots(page, base, worker):
    """The pictures of the README and docs/, from the real pages (written only when SCREENSHOTS_DIR
    is set)."""
    target = os.environ.get("SCREENSHOTS_DIR")
    if not target:
        pytest.skip("SCREENSHOTS_DIR is not set (make screenshots sets it)")
    folder = Path(target)
    folder.mkdir(parents=True, exist_ok=True)
    for a in range(3):
        requests.post(
            f"{base}/api/v1/tasks", json={"name": "sum", "parameters": {"a": a, "b": 1}}, timeout=10
        )
    body = {"name": "process_data", "parameters": {"duration_seconds": 20, "record_count": 1000}}
    running = requests.post(f"{base}/api/v1/tasks", json=body, timeout=10).json()
    page.goto(f"{base}/dashboard/tasks/{running['id']}")
    deadline = time.monotonic() + 30
    while progress(page) < 20:
        assert time.monotonic() < deadline, "the task did not reach 20 % in 30 s"
        page.wait_for_timeout(100)
    page.screenshot(path=str(folder / "task.png"), full_page=True)
    page.goto(f"{base}/")
    page.locator(f"tr[data-id='{running['id']}']").wait_for()
    page.screenshot(path=str(folder / "tasks.png"), full_page=True)
    requests.post(f"{base}/api/v1/tasks/{running['id']}/cancel", timeout=10)


@pytest.fixture
def keyed(stack_env) -> Iterator[tuple[str, dict[str, str]]]:
    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    keys = app.extensions["tasker"].keys
    tag = uuid.uuid4().hex[:6]
    made = {who: keys.create(f"{who}-{tag}")[1] for who in ("alice", "bob")}
    with serving(app) as url:
        yield url, made
    app.extensions["tasker"].db.dispose()


def test_keys_mode_signs_in_once_and_sees_only_the_keys_tasks(browser, keyed):
    base, made = keyed
    bobs = requests.post(
        f"{base}/api/v1/tasks",
        json={"name": "sum", "parameters": {"a": 1, "b": 1}, "countdown": 600},
        headers={"X-API-Key": made["bob"]},
        timeout=10,
    ).json()
    page = browser.new_page()
    page.goto(f"{base}/")
    page.wait_for_url(re.compile(r"/dashboard/login"))
    page.fill("#l-key", "tsk_wrong")
    page.click("button[type=submit]")
    page.locator("#le-key").wait_for(state="visible")
    page.fill("#l-key", made["alice"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.locator("#live:has-text('live')").wait_for()
    cookie = next(c for c in page.context.cookies() if c["name"] == "tasker_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert made["alice"] not in cookie["value"]  # the session keeps the key's digest, never the key
    assert page.locator(f"tr[data-id='{bobs['id']}']").count() == 0
    page.goto(f"{base}/dashboard/tasks/{bobs['id']}")
    page.locator("#notice:has-text('not found')").wait_for()
    # The cookie alone cannot change anything: a state-changing call needs the page's CSRF token.
    session = requests.Session()
    session.cookies.set("tasker_session", cookie["value"], domain="127.0.0.1")
    listed = session.get(f"{base}/api/v1/tasks", timeout=10)
    assert listed.status_code == 200 and all(t["owner"].startswith("alice-") for t in listed.json()["tasks"])
    refused = session.post(f"{base}/api/v1/tasks", json={"name": "sum", "parameters": {"a": 1, "b": 2}})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    accepted = session.post(
        f"{base}/api/v1/tasks",
        json={"name": "sum", "parameters": {"a": 1, "b": 2}, "countdown": 600},
        headers={"X-CSRF-Token": token},
    )
    assert accepted.status_code == 202 and accepted.json()["owner"].startswith("alice-")
    page.close()


@pytest.mark.parametrize("target", ["/%5Cevil.example", "/%09/evil.example", "/%0A/evil.example"])
def test_sign_in_never_sends_the_browser_off_site(browser, keyed, target):
    """A link to the sign-in page with `next` of `/\\evil`, `/` + tab or `/` + newline: after the
    key, the browser stays on this site (the server picks where to go)."""
    base, made = keyed
    page = browser.new_page()
    page.goto(f"{base}/dashboard/login?next={target}")
    page.fill("#l-key", made["alice"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    page.close()


def test_a_workflows_page_shows_its_steps_live_and_resumes_it(page, base, worker, tmp_path):
    """The map fills in as its items end, the join follows, and a failed run resumes from the
    page; the list and the task page link to it."""
    flag, effects = tmp_path / "broken", str(tmp_path / "effects.txt")
    flag.touch()
    body = {
        "name": "dash-fan",
        "on_failure": "continue",
        "input": {"items": [{"n": n, "flag": str(flag) if n == 2 else ""} for n in range(4)]},
        "steps": [
            {
                "id": "each",
                "task": "record",
                "map": {"over": {"$input": "/items"}, "max_parallel": 2},
                "parameters": {
                    "path": effects, "value": {"$item": "/n"},
                    "seconds": 0.3, "fail_while": {"$item": "/flag"},
                },
            },
            {"id": "join", "task": "total", "after": ["each"], "join": "all_done",
             "parameters": {"path": effects, "values": {"$step": "each", "path": "/result"}}},
        ],
    }  # fmt: skip
    workflow = requests.post(f"{base}/api/v1/workflows", json=body, timeout=10).json()
    page.goto(f"{base}/dashboard/workflows/{workflow['id']}")
    page.locator("#step-rows tr[data-step='each'] .outcome:has-text('of 4 done')").wait_for(timeout=10_000)
    page.locator("#status:text-is('FAILED')").wait_for(timeout=30_000)
    each = page.locator("#step-rows tr[data-step='each']")
    assert "3 of 4 done" in each.inner_text() and "1 failed" in each.inner_text()
    assert page.locator("#step-rows tr[data-step='join'] .outcome").inner_text() == "4"  # 0 + 1 + 3
    flag.unlink()
    page.click("#resume")
    page.locator("#status:text-is('COMPLETED')").wait_for(timeout=30_000)
    assert page.locator("#step-rows tr[data-step='join'] .outcome").inner_text() == "6"
    page.click("#step-rows tr[data-step='join'] a")
    page.locator("#timeline dd:has-text('step join of')").wait_for()
    page.goto(f"{base}/dashboard/workflows")
    page.locator(f"#workflow-rows tr[data-id='{workflow['id']}'] .badge:text-is('COMPLETED')").wait_for()
    page.goto(f"{base}/?workflow_id={workflow['id']}")
    page.locator("#schedule-filter:has-text('Steps of the workflow dash-fan')").wait_for()
    page.locator("#task-rows tr").nth(5).wait_for()  # 4 items, 1 again, the map's row, 2 joins: 8
