"""The webhook parts on their own: the connect-time guard, signing and rotation, the retry
schedule, bounded answers, and the settings."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.errors import Conflict, InvalidInput
from app.core.webhooks import NOT_PUBLIC, Deliveries, RefusedAddress, SigningSecrets, WebhookPolicy, sign
from app.core.webhooks.policy import guarded_session, refusal
from app.core.webhooks.sending import MAX_RESPONSE_BYTES, retry_after_seconds
from app.models import task as task_model
from app.models import webhook as webhook_model
from config import ConfigError, load_config
from tests.support import REGISTRY, WEBHOOK_SECRET, Receiver, StallingReceiver, closed_port


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.stop()


def test_a_connection_to_loopback_is_refused_at_connect(receiver):
    """The canary for the urllib3 internals GuardedAdapter relies on (_new_conn): if an upgrade
    stops calling it, this request goes through and the test fails."""
    with pytest.raises(RefusedAddress, match="not a public address"):
        guarded_session(frozenset()).post(receiver.url(), data=b"{}", timeout=2)
    with pytest.raises(RefusedAddress, match="not a public address"):  # https too, before any TLS hello
        guarded_session(frozenset()).post(f"https://127.0.0.1:{receiver.port}/", data=b"{}", timeout=2)
    assert receiver.requests == []  # refused before a byte was sent
    answer = guarded_session(frozenset({"127.0.0.1"})).post(receiver.url(), data=b"{}", timeout=2)
    assert answer.status_code == 200 and len(receiver.requests) == 1


def test_an_internal_port_open_or_closed_gets_one_answer(receiver):
    """A name that resolves (or rebinds) to an internal address: refused before any connect, in
    the same words whether something listens there or not, so deliveries cannot map ports. The
    canary for urllib3 connecting to `_dns_host` (which the guard points at the checked address)."""
    import inspect

    import urllib3.connection

    assert "self._dns_host" in inspect.getsource(urllib3.connection.HTTPConnection._new_conn)
    policy = WebhookPolicy(allow_http=True)
    deliveries = Deliveries(None, lambda d: None, None, policy, [1], total_timeout=2.0)
    errors = {
        deliveries.sender.send(f"http://localhost:{port}/hook", "msg_7", b"{}", [WEBHOOK_SECRET]).error
        for port in (receiver.port, closed_port())
    }
    assert errors == {"refused: localhost " + NOT_PUBLIC}, errors
    assert receiver.requests == []


def test_no_proxy_from_the_environment_stands_between(monkeypatch, receiver):
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")  # would be a private address anyway
    answer = guarded_session(frozenset({"127.0.0.1"})).post(receiver.url(), data=b"{}", timeout=2)
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.2", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("fe80::1%eth0", "link-local"),
        ("169.254.169.254", "link-local"),
        ("198.18.0.1", "private"),  # benchmarking range
        ("192.0.2.10", "private"),  # documentation
    ],
)
def test_refusal_names_the_kind_of_address(address, reason):
    found = refusal(address)
    assert (found is None) if reason is None else (reason in found)


def test_a_delivery_signature_verifies_as_standard_webhooks_say():
    body = b'{"type":"task.completed"}'
    timestamp = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(timestamp)}
    headers["webhook-signature"] = sign([WEBHOOK_SECRET], "msg_1", timestamp, body)
    assert Webhook(WEBHOOK_SECRET).verify(body, headers) == {"type": "task.completed"}
    headers["webhook-timestamp"] = str(timestamp - 600)  # a replay from 10 minutes ago
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(body, headers)


def test_each_owner_has_a_secret_and_a_rotation_keeps_the_old_one_signing_for_a_while(sqlite_db):
    secrets = SigningSecrets(sqlite_db, "keys", "k" * 32, [], overlap_hours=24)
    alice, bob = secrets.current("alice"), secrets.current("bob")
    assert alice.startswith("whsec_") and alice != bob and secrets.current("alice") == alice
    rotated = secrets.rotate("alice")
    assert rotated["secret"] != alice and secrets.signing("alice") == [rotated["secret"], alice]
    body, timestamp = b"{}", int(time.time())
    signature = sign(secrets.signing("alice"), "msg_2", timestamp, body)
    headers = {"webhook-id": "msg_2", "webhook-timestamp": str(timestamp), "webhook-signature": signature}
    for secret in (alice, rotated["secret"]):  # a receiver on either secret accepts it
        Webhook(secret).verify(body, headers)
    with pytest.raises(Conflict, match="rotated already"):  # a second would drop alice's first now
        secrets.rotate("alice")
    assert secrets.signing("alice") == [rotated["secret"], alice]
    past = datetime.now(UTC) - timedelta(seconds=1)
    sqlite_db.run(lambda c: c.execute(webhook_model.secrets.update().values(previous_until=past)))
    assert secrets.signing("alice") == [rotated["secret"]]  # the overlap is over
    assert SigningSecrets(sqlite_db, "keys", "x" * 32, [], 24).current("bob") != bob  # from SECRET_KEY
    assert secrets.rotate("bob")["secret"] == secrets.current("bob") != bob  # a first rotation


def test_open_mode_signs_with_the_deployments_secrets_and_rotates_by_setting():
    secrets = SigningSecrets(None, "open", "k" * 32, [WEBHOOK_SECRET, "whsec_b2xk"], 24)
    assert secrets.signing("default") == [WEBHOOK_SECRET, "whsec_b2xk"]
    assert not SigningSecrets(None, "open", "k" * 32, [], 24).available()


def test_the_retry_schedule_with_jitter_and_retry_after():
    deliveries = Deliveries(None, lambda d: None, None, WebhookPolicy(), [5, 30, 120])
    assert all(4.5 <= deliveries._delay(1, None) <= 5.5 for _ in range(50))
    assert all(27 <= deliveries._delay(2, None) <= 33 for _ in range(50))
    assert deliveries._delay(1, 60) == 60  # Retry-After longer than the schedule's wait
    assert deliveries._delay(1, 10_000) == 120  # but never past the longest wait
    assert retry_after_seconds("7") == 7
    http_date = (datetime.now(UTC) + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 85 <= retry_after_seconds(http_date) <= 90
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_an_answer_is_read_up_to_64_kb_and_1_kb_kept_within_the_time_limit(receiver):
    policy = WebhookPolicy(allow_http=True, allowed_hosts=frozenset({"127.0.0.1"}))
    deliveries = Deliveries(None, lambda d: None, None, policy, [1], total_timeout=1.0)
    receiver.answer((200, {}, "x" * (4 * MAX_RESPONSE_BYTES)))
    attempt = deliveries.sender.send(receiver.url(), "msg_3", b"{}", [WEBHOOK_SECRET])
    assert attempt.delivered and attempt.response == "x" * 1024
    receiver.released.clear()  # now it never answers
    started = time.monotonic()
    attempt = deliveries.sender.send(receiver.url(), "msg_4", b"{}", [WEBHOOK_SECRET])
    assert attempt.status_code is None and attempt.error.startswith("timed out")
    assert attempt.retryable and time.monotonic() - started < 3


@pytest.mark.parametrize("kind", ["tarpit", "silent"])
def test_one_clock_bounds_the_whole_attempt_however_slowly_the_receiver_answers(kind):
    """A tarpit (a byte every 0.2 s of a promised 100000) never trips a per-read timeout; the
    attempt's clock ends it all the same, as a retryable time-out, not as an answer."""
    stalling = StallingReceiver(kind, byte_every=0.2)
    policy = WebhookPolicy(allow_http=True, allowed_hosts=frozenset({"127.0.0.1"}))
    deliveries = Deliveries(None, lambda d: None, None, policy, [1], total_timeout=1.0)
    try:
        started = time.monotonic()
        attempt = deliveries.sender.send(
            f"http://127.0.0.1:{stalling.port}/", "msg_5", b"{}", [WEBHOOK_SECRET]
        )
        took = time.monotonic() - started
    finally:
        stalling.stop()
    assert attempt.status_code is None and attempt.error.startswith(
        "timed out: the attempt took longer than 1 s"
    )
    assert attempt.retryable and not attempt.delivered
    assert 0.9 < took < 1.9, took


def test_an_attempt_ended_by_celerys_soft_time_limit_is_a_failed_attempt():
    """Celery's soft limit raises SoftTimeLimitExceeded wherever the process is; the attempt is
    still an attempt with its reason, not an exception that leaves the delivery SENDING."""
    from celery.exceptions import SoftTimeLimitExceeded

    def soft_limit(signum, frame):
        raise SoftTimeLimitExceeded("SoftTimeLimitExceeded(True,)")

    stalling = StallingReceiver("silent")
    policy = WebhookPolicy(allow_http=True, allowed_hosts=frozenset({"127.0.0.1"}))
    deliveries = Deliveries(None, lambda d: None, None, policy, [1], total_timeout=30.0)
    previous = signal.signal(signal.SIGALRM, soft_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        attempt = deliveries.sender.send(
            f"http://127.0.0.1:{stalling.port}/", "msg_6", b"{}", [WEBHOOK_SECRET]
        )
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        stalling.stop()
    assert attempt.error.startswith("ended by SoftTimeLimitExceeded") and attempt.retryable


@pytest.mark.parametrize(("attempts", "status"), [(1, "QUEUED"), (2, "FAILED")])
def test_a_lost_attempt_is_recorded_and_counts_against_the_cap(sqlite_db, attempts, status):
    """The recovery sweep finds a delivery SENDING for too long (its worker was killed, or passed
    its hard limit): the attempt is on record, and at the cap the delivery is FAILED, not sent
    once more."""
    published = []
    deliveries = Deliveries(sqlite_db, published.append, None, WebhookPolicy(), [1])  # a cap of 2
    task_id = uuid.uuid4()
    webhook = {"url": "https://example.com/hook", "events": ["completed"]}
    sqlite_db.run(lambda c: task_model.insert(c, task_id, "sum_two_numbers", {}, "default", webhook=webhook))
    delivery = sqlite_db.run(lambda c: webhook_model.record(c, task_id, "default", webhook, "COMPLETED"))
    for _ in range(attempts):
        sqlite_db.run(lambda c: webhook_model.queue_again(c, delivery, ("QUEUED", "SENDING")))
        sqlite_db.run(lambda c: webhook_model.claim(c, delivery))
    now = sqlite_db.run(task_model.database_now)
    assert deliveries.recover(now - timedelta(hours=1), now - timedelta(hours=1)) == 0  # not stuck yet
    assert deliveries.recover(now + timedelta(seconds=1), now + timedelta(seconds=1)) == 1
    row, tried = sqlite_db.run(lambda c: webhook_model.for_task(c, task_id))[0]
    assert row.status == status and row.attempts == attempts
    assert [a.error for a in tried] == [webhook_model.LOST]
    assert published == ([delivery] if status == "QUEUED" else [])
    if status == "FAILED":
        assert row.last_error.endswith(f"gave up after {attempts} attempts")


def test_an_outcome_and_its_delivery_are_one_transaction(sqlite_db):
    """A delivery exists exactly when the outcome does: a failure after the outcome's write rolls
    both back."""
    task_id = uuid.uuid4()
    webhook = {"url": "https://example.com/hook", "events": ["completed"]}
    sqlite_db.run(lambda c: task_model.insert(c, task_id, "sum_two_numbers", {}, "default", webhook=webhook))

    def finish_then_fail(conn):
        row = task_model.finish(conn, task_id, task_model.TaskStatus.COMPLETED, 3)
        webhook_model.record(conn, task_id, row.owner, row.webhook, "COMPLETED")
        raise RuntimeError("the process dies here")

    with pytest.raises(RuntimeError):
        sqlite_db.run(finish_then_fail)
    assert sqlite_db.run(lambda c: task_model.get(c, task_id)).status == "PENDING"
    assert sqlite_db.run(lambda c: webhook_model.for_task(c, task_id)) == []
    sqlite_db.run(lambda c: webhook_model.record(c, task_id, "default", webhook, "COMPLETED"))
    assert len(sqlite_db.run(lambda c: webhook_model.for_task(c, task_id))) == 1
    assert sqlite_db.run(lambda c: webhook_model.record(c, task_id, "default", webhook, "FAILED")) is None


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("WEBHOOK_SECRET", "not-a-secret", "whsec_"),
        ("WEBHOOK_SECRET", "whsec_c2hvcnQ=", "24 to 64"),
        ("WEBHOOK_SECRET", f"{WEBHOOK_SECRET} {WEBHOOK_SECRET} {WEBHOOK_SECRET}", "at most two"),
        ("WEBHOOK_RETRY_DELAYS", "5,soon", "seconds separated by commas"),
        ("WEBHOOK_RETRY_DELAYS", "5,100000", "from 0.1 to 86400"),
    ],
)
def test_bad_webhook_settings_are_refused_naming_them(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        load_config("testing", {setting: value})


def test_the_webhook_settings_defaults():
    config = load_config("testing", {})
    assert config["WEBHOOK_RETRY_DELAYS"] == [5, 30, 120, 600, 1800, 7200, 21600, 43200, 86400]
    assert (config["WEBHOOK_ALLOW_HTTP"], config["WEBHOOK_ALLOWED_HOSTS"], config["WEBHOOK_SECRET"]) == (
        False,
        [],
        [],
    )
    assert (config["WEBHOOK_CONNECT_TIMEOUT_SECONDS"], config["WEBHOOK_TIMEOUT_SECONDS"]) == (3.0, 10.0)


def test_beat_releases_a_due_retry_by_the_databases_clock_only(sqlite_db):
    """A scheduler pass given a `now` of its own (tests move time for schedules that way) releases
    webhook retries by the database's clock all the same."""
    from app.core.beat.scheduler import Scheduler

    published = []
    deliveries = Deliveries(sqlite_db, published.append, None, WebhookPolicy(), [1])
    task_id = uuid.uuid4()
    webhook = {"url": "https://example.com/hook", "events": ["completed"]}
    sqlite_db.run(lambda c: task_model.insert(c, task_id, "sum_two_numbers", {}, "default", webhook=webhook))
    delivery = sqlite_db.run(lambda c: webhook_model.record(c, task_id, "default", webhook, "COMPLETED"))
    sqlite_db.run(lambda c: webhook_model.claim(c, delivery))
    now = sqlite_db.run(task_model.database_now)
    sqlite_db.run(lambda c: webhook_model.wait_until(c, delivery, now + timedelta(hours=1), "HTTP 503"))
    scheduler = Scheduler(sqlite_db, REGISTRY, None, deliveries=deliveries)
    assert scheduler.run_due(now + timedelta(days=1))["webhook_retries"] == 0 and published == []
    sqlite_db.run(lambda c: webhook_model.wait_until(c, delivery, now, "HTTP 503"))  # not SENDING: no-op
    sqlite_db.run(
        lambda c: c.execute(
            webhook_model.deliveries.update().values(next_attempt_at=now - timedelta(seconds=1))
        )
    )
    assert scheduler.run_due()["webhook_retries"] == 1 and published == [delivery]
    assert sqlite_db.run(lambda c: webhook_model.get(c, delivery)).status == "QUEUED"


def test_a_task_starts_its_log_context_afresh():
    """Celery runs no after_return for a retried, ignored or rejected task: the next task in that
    process must not inherit its request id (a grep for one request would find another's lines)."""
    from app.core import logs

    stale = logs.bind(request_id="an-earlier-request", task_type="query_chatgpt")
    token = logs.start(task_id="this-task", request_id=None)
    try:
        assert logs.context() == {"task_id": "this-task"}
    finally:
        logs.unbind(token)
        logs.unbind(stale)


@pytest.mark.parametrize(
    ("options", "threads"),
    [
        ({"queues": ["webhooks"], "concurrency": None}, 12),  # the deliveries' worker: the setting
        ({"queues": "webhooks", "concurrency": None}, 12),
        ({"queues": ["webhooks"], "concurrency": 3}, None),  # --concurrency wins
        ({"queues": ["default", "webhooks"], "concurrency": None}, None),  # a tasks' worker: untouched
        ({"queues": None, "concurrency": None}, None),
    ],
)
def test_a_worker_of_the_webhooks_queue_alone_runs_webhook_worker_threads(options, threads):
    from celery import Celery

    from app.core.celery_app import WEBHOOK_THREADS_SETTING, size_webhook_worker

    conf = Celery(set_as_current=False).conf
    conf.update({WEBHOOK_THREADS_SETTING: 12, "worker_concurrency": None})
    size_webhook_worker(sender="w@h", conf=conf, options=options)
    assert conf.worker_concurrency == threads


def test_an_allowed_host_may_be_opened_on_one_port_only(receiver):
    """WEBHOOK_ALLOWED_HOSTS=127.0.0.1:<port> opens that port, not every port of the host."""
    entries = frozenset({f"127.0.0.1:{receiver.port}"})
    policy = WebhookPolicy(allow_http=True, allowed_hosts=entries)
    policy.check_url(receiver.url())
    with pytest.raises(InvalidInput, match="not allowed"):
        policy.check_url(f"http://127.0.0.1:{closed_port()}/hook")
    assert guarded_session(entries).post(receiver.url(), data=b"{}", timeout=2).status_code == 200
    with pytest.raises(RefusedAddress):
        guarded_session(entries).post(f"http://127.0.0.1:{closed_port()}/", data=b"{}", timeout=2)
    assert len(receiver.requests) == 1
