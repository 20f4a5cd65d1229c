"""Live events over SSE: a task's changes as they happen, resumable with Last-Event-ID, and the
caller's task list, fed by the change listener of the API process (no per-stream polling)."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import build_app, child_env
from tests.integration.conftest import serving
from tests.support import answers, free_port, poll, rss_mb, start_gunicorn, stop_process, unread_stream

pytestmark = pytest.mark.integration


class Stream:
    """An open SSE response, read event by event."""

    def __init__(self, url: str, deadline: float = 60.0, **headers: str):
        self.response = requests.get(url, stream=True, timeout=30, headers=headers)
        self.deadline = time.monotonic() + deadline  # heartbeats (1 s in tests) let it be checked
        self.lines = self.response.iter_lines(decode_unicode=True)
        self.comments = 0

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.response.close()

    def next(self) -> dict[str, Any] | None:
        """The next event ({"id", "event", "data"}), or None when the server ended the stream."""
        event: dict[str, Any] = {}
        for line in self.lines:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"no end of the stream before the deadline; last event: {event}")
            if not line:
                if "data" in event:
                    return event
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            field, _, value = line.partition(": ")
            event[field] = json.loads(value) if field == "data" else value
        return None

    def until(self, status: str) -> list[dict[str, Any]]:
        events = []
        while (event := self.next()) is not None:
            events.append(event)
            if event["data"]["status"] == status:
                return events
        raise AssertionError(f"the stream ended before {status}: {[e['data']['status'] for e in events]}")


def submit(base: str, name: str, parameters: dict[str, Any], **options: Any) -> dict[str, Any]:
    response = requests.post(f"{base}/api/v1/tasks", json={"name": name, "parameters": parameters, **options})
    assert response.status_code == 202, response.text
    return response.json()


def test_a_task_stream_shows_each_change_and_ends_after_the_terminal_one(base, worker):
    task = submit(base, "process_data", {"duration_seconds": 2, "record_count": 20})
    with Stream(f"{base}/api/v1/tasks/{task['id']}/events") as stream:
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        events = stream.until("COMPLETED")
        assert stream.next() is None, "the stream goes on after the terminal event"
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(set(ids)), "event ids (revisions) rise"
    progress = [e["data"]["progress"] for e in events if e["data"]["progress"] is not None]
    assert progress == sorted(progress) and progress[-1] == 100
    assert len(progress) >= 3, f"progress moved in too few steps: {progress}"
    final = events[-1]["data"]
    assert final["result"]["records_processed"] == 20
    assert final == requests.get(f"{base}/api/v1/tasks/{task['id']}").json()


def test_a_reconnect_with_last_event_id_gets_the_change_made_while_away(base):
    task = submit(base, "sum", {"a": 1, "b": 2}, countdown=600)
    url = f"{base}/api/v1/tasks/{task['id']}/events"
    with Stream(url) as stream:
        first = stream.next()
    assert first["data"]["status"] == "SCHEDULED"
    # While no stream is open the task changes; a reconnect names the last event it saw.
    assert requests.post(f"{base}/api/v1/tasks/{task['id']}/cancel").status_code == 200
    with Stream(url, **{"Last-Event-ID": first["id"]}) as stream:
        events = stream.until("CANCELLED")
        assert stream.next() is None
    assert [e["data"]["status"] for e in events] == ["CANCELLED"]
    assert int(events[0]["id"]) > int(first["id"])
    # Seen in full: EventSource is told to stop (204), not to reconnect for ever.
    again = requests.get(url, headers={"Last-Event-ID": events[-1]["id"]}, timeout=10)
    assert again.status_code == 204


def test_a_reconnect_to_an_unchanged_task_sends_nothing_until_it_changes(base):
    task = submit(base, "sum", {"a": 1, "b": 2}, countdown=600)
    url = f"{base}/api/v1/tasks/{task['id']}/events"
    with Stream(url) as stream:
        first = stream.next()
    with Stream(url, **{"Last-Event-ID": first["id"]}) as stream:
        cancel = threading.Timer(
            2.5, lambda: requests.post(f"{base}/api/v1/tasks/{task['id']}/cancel", timeout=10)
        )
        cancel.start()
        event = stream.next()  # not the SCHEDULED state again: the first event is the change
        cancel.join()
        assert stream.comments >= 1, "no heartbeat while the stream was idle"
    assert event["data"]["status"] == "CANCELLED"


def test_stream_errors_are_json(base):
    missing = requests.get(f"{base}/api/v1/tasks/00000000-0000-4000-8000-000000000000/events", timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    task = submit(base, "sum", {"a": 1, "b": 2}, countdown=600)
    bad = requests.get(
        f"{base}/api/v1/tasks/{task['id']}/events", headers={"Last-Event-ID": "abc"}, timeout=10
    )
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["details"]
    beyond = requests.get(
        f"{base}/api/v1/tasks/{task['id']}/events", headers={"Last-Event-ID": "999999"}, timeout=10
    )  # a stream that would wait for an event id the task may never reach
    assert beyond.status_code == 400 and "Last-Event-ID" in beyond.json()["details"]
    status = requests.get(f"{base}/api/v1/events?status=DONE", timeout=10)
    assert status.status_code == 400 and "status" in status.json()["details"]


def test_the_list_stream_carries_the_callers_matching_changes(base, worker):
    with Stream(f"{base}/api/v1/events?name=sum_two_numbers") as stream:
        wanted = submit(base, "sum", {"a": 20, "b": 22})
        other = submit(base, "process_data", {"duration_seconds": 0, "record_count": 1})
        seen = []
        while (event := stream.next()) is not None:
            assert event["data"]["name"] == "sum_two_numbers", "a task of another name was sent"
            seen.append(event["data"])
            if event["data"]["id"] == wanted["id"] and event["data"]["status"] == "COMPLETED":
                break
    mine = [e for e in seen if e["id"] == wanted["id"]]
    assert mine[-1]["result"] == 42
    assert other["id"] not in {e["id"] for e in seen}


def test_the_list_stream_shows_only_the_owners_tasks(stack_env, worker):
    app = build_app({**stack_env, "AUTH_MODE": "keys"})
    keys = app.extensions["tasker"].keys
    alice, bob = (keys.create(f"{who}-events")[1] for who in ("alice", "bob"))
    with serving(app) as base:
        with Stream(f"{base}/api/v1/events", Authorization=f"Bearer {alice}") as stream:
            for key, value in ((bob, 1), (alice, 2)):
                response = requests.post(
                    f"{base}/api/v1/tasks",
                    json={"name": "sum", "parameters": {"a": value, "b": 0}},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert response.status_code == 202
            event = stream.until("COMPLETED")[-1]["data"]
        assert (event["owner"], event["result"]) == ("alice-events", 2)
        assert requests.get(f"{base}/api/v1/events", timeout=10).status_code == 401
    app.extensions["tasker"].db.dispose()


def test_gunicorn_ends_open_streams_when_it_stops(stack_env, tmp_path):
    """SIGTERM: each stream ends cleanly at once (clients reconnect elsewhere), instead of holding
    the worker for its 30 s graceful timeout."""
    port = free_port()
    settings = {"GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "STREAM_MAX_CONCURRENT": "2"}
    env = child_env({**stack_env, **settings})
    server = start_gunicorn(env, tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    try:
        poll(lambda: answers(f"{base}/health"), what="gunicorn to answer")
        task = submit(base, "sum", {"a": 1, "b": 2}, countdown=600)
        streams = [Stream(f"{base}/api/v1/tasks/{task['id']}/events") for _ in range(2)]
        for stream in streams:
            assert stream.next()["data"]["status"] == "SCHEDULED"
        busy = requests.get(f"{base}/api/v1/tasks/{task['id']}/events", timeout=10)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert busy.json()["code"] == "busy"
        assert requests.get(f"{base}/health", timeout=2).ok  # streams have threads of their own
        server.send_signal(signal.SIGTERM)
        for stream in streams:
            assert stream.next() is None  # ended, and the chunked body closed properly
            stream.response.close()
        assert server.wait(timeout=20) == 0  # well before the graceful timeout (30 s)
    finally:
        stop_process(server)


def test_one_owner_cannot_take_every_stream_of_a_process(stack_env):
    """STREAM_MAX_PER_OWNER: alice's third stream is a 429 naming the quota, while bob still gets
    one; a stream closed gives its slot back."""
    app = build_app({**stack_env, "AUTH_MODE": "keys", "STREAM_MAX_PER_OWNER": "2"})
    keys = app.extensions["tasker"].keys
    alice, bob = ({"Authorization": f"Bearer {keys.create(f'{who}-streams')[1]}"} for who in ("alice", "bob"))
    with serving(app) as base:
        url = f"{base}/api/v1/events"
        held = [Stream(url, **alice) for _ in range(2)]
        refused = requests.get(url, headers=alice, timeout=10)
        assert refused.status_code == 429, refused.text
        assert refused.json()["code"] == "quota_exceeded" and refused.json()["details"]["quota"] == "streams"
        with Stream(url, **bob) as other:
            assert other.response.status_code == 200
        held.pop().response.close()

        def reopened() -> bool:
            answer = requests.get(url, headers=alice, timeout=10, stream=True)
            answer.close()
            return answer.status_code == 200

        poll(reopened, what="alice's closed stream to give its slot back")
        for stream in held:
            stream.response.close()
    app.extensions["tasker"].db.dispose()


@pytest.mark.parametrize("stack", ["real"], indirect=True)  # the API process's memory: one stack shows it
def test_a_stream_client_that_never_reads_costs_the_api_process_a_bounded_amount(stack_env, tmp_path):
    """A list stream nobody reads while 300 tasks of 60 KB change: the API process holds at most
    STREAM_BACKLOG_KB for it, then closes it (the send times out); its memory stays flat."""
    port = free_port()
    settings = {
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "STREAM_BACKLOG_KB": "256",
        "STREAM_SEND_TIMEOUT_SECONDS": "2",
    }
    server = start_gunicorn(child_env({**stack_env, **settings}), tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    stream = None
    try:
        poll(lambda: answers(f"{base}/health"), what="gunicorn to answer")
        child = poll(
            lambda: [
                int(p) for p in Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
            ],
            what="the gunicorn worker",
        )[0]
        stream = unread_stream(port, "/api/v1/events")
        body = {
            "name": "find_longest_consecutive_letters",
            "parameters": {"string": "ab" * 30_000},
            "countdown": 600,
        }
        session = requests.Session()
        assert session.post(f"{base}/api/v1/tasks", json=body, timeout=30).status_code == 202
        before = rss_mb(child)
        for _ in range(300):
            assert session.post(f"{base}/api/v1/tasks", json=body, timeout=30).status_code == 202
        stream.settimeout(5)
        received, closes = b"", time.monotonic() + 60  # heartbeats flow while it stays open
        while (chunk := stream.recv(65536)) and time.monotonic() < closes:
            received += chunk
        assert not chunk, "the stream was still open a minute later"
        grown = rss_mb(child) - before
        assert grown < 12, f"the API process grew {grown:.0f} MB for a stream nobody read"
        assert b"HTTP/1.1 200" in received[:20]
    finally:
        if stream is not None:
            stream.close()
        stop_process(server)
