"""The parts of keys mode that need no server: exposure rules, quotas, the usage policy,
redaction of log records, private files, and key bookkeeping."""

from __future__ import annotations

import logging
import stat
import uuid

import pytest

from app.core import redact
from app.core.broker.filesystem_broker import FilesystemBroker
from app.core.errors import InvalidInput
from app.core.keys import KeyManager, local_secret, new_key
from app.core.private import private_dir, private_file
from app.core.quotas import QuotaExceeded, UnfinishedTasks
from app.core.usage import UsagePolicy
from app.models import api_key as key_model
from config import ConfigError, load_config
from config.base import check_exposure
from tests.support import insert_task


def test_open_mode_refuses_a_network_address_unless_asked_for():
    implicit = load_config(env={})
    assert check_exposure(implicit, ["127.0.0.1", "localhost", "::1"]) is None
    with pytest.raises(ConfigError, match="set AUTH_MODE=open to mean it"):
        check_exposure(implicit, ["0.0.0.0"])
    explicit = load_config(env={"AUTH_MODE": "open"})
    assert "WARNING" in check_exposure(explicit, ["0.0.0.0"])
    assert check_exposure(load_config(env={"AUTH_MODE": "keys"}), ["0.0.0.0"]) is None


def test_the_unfinished_quota_counts_between_reads_and_refreshes(sqlite_db):
    quota = UnfinishedTasks(sqlite_db, limit=2, refresh_seconds=3600)
    insert_task(sqlite_db, owner="ann")
    quota.admit("ann")  # read: 1 in the table, this one makes 2
    with pytest.raises(QuotaExceeded) as refused:
        quota.admit("ann")
    assert refused.value.details == {"quota": "unfinished_tasks", "limit": 2}
    quota.admit("bob")  # per owner
    quota.release("ann")  # its insert failed: the place is free again
    quota.admit("ann")
    assert UnfinishedTasks(sqlite_db, limit=0).admit("ann") is None  # 0: no quota


def test_the_usage_policy_names_the_allowed_values():
    policy = UsagePolicy(["gpt-a", "gpt-b"], max_tokens=100)
    policy.check("query_chatgpt", {"prompt": "x", "model": "gpt-b", "max_tokens": 100})
    policy.check("sum_two_numbers", {"model": "anything"})
    with pytest.raises(InvalidInput, match="allowed: gpt-a, gpt-b"):
        policy.check("query_chatgpt", {"prompt": "x", "model": "gpt-z" * 100}, "task_parameters")
    with pytest.raises(InvalidInput) as refused:
        policy.check("query_chatgpt", {"prompt": "x", "max_tokens": 101})
    assert refused.value.details == {"parameters": {"max_tokens": ["Must be at most 100."]}}
    documented = policy.document("query_chatgpt", {"properties": {"model": {"type": "string"}}})
    assert documented["properties"]["model"]["enum"] == ["gpt-a", "gpt-b"]
    assert documented["properties"]["max_tokens"]["maximum"] == 100


def test_log_records_lose_every_configured_secret(caplog):
    config = {
        "OPENWEATHER_API_KEY": "owm-secret-123",
        "DATABASE_URL": "postgresql://tasker:db-pass-456@db:5432/tasker",
    }
    redact.install(redact.Redactor.from_config(config))
    try:
        logger = logging.getLogger("tasker.test")
        with caplog.at_level(logging.DEBUG):
            logger.debug("GET /weather?q=Paris&appid=%s", "owm-secret-123")
            try:
                raise RuntimeError("auth failed for db-pass-456")
            except RuntimeError:
                logger.exception("connect")
        assert "owm-secret-123" not in caplog.text and "db-pass-456" not in caplog.text
        assert "appid=[redacted]" in caplog.text and "auth failed for [redacted]" in caplog.text
    finally:
        redact.install(redact.Redactor([], []))


def test_data_files_are_private(tmp_path):
    folder = private_dir(tmp_path / "data")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(private_file(folder / "tasker.db").stat().st_mode) == 0o600
    FilesystemBroker.transport_options({"DATA_DIR": str(folder)})
    for part in ("broker", "broker/queue", "broker/control", "broker/processed"):
        assert stat.S_IMODE((folder / part).stat().st_mode) == 0o700, part
    secret = local_secret(str(folder))
    assert len(secret) == 64 and local_secret(str(folder)) == secret  # made once, then kept
    assert stat.S_IMODE((folder / "secret_key").stat().st_mode) == 0o600


def test_last_used_is_written_once_a_minute_not_per_request(sqlite_db, mocker):
    keys = KeyManager(sqlite_db, "k" * 32, touch_seconds=60)
    resource, key = keys.create("svc")
    touch = mocker.spy(key_model, "touch")
    for _ in range(20):
        assert keys.authenticate(key).owner == "svc"
    assert touch.call_count == 1
    assert keys.get(uuid.UUID(resource["id"]))["last_used_at"] is not None


def test_a_refused_key_is_not_looked_up_again_at_once(sqlite_db, mocker):
    keys = KeyManager(sqlite_db, "k" * 32)
    lookups = mocker.spy(key_model, "by_hash")
    wrong = new_key()
    assert keys.authenticate(wrong) is None and keys.authenticate(wrong) is None
    assert lookups.call_count == 1
    assert keys.authenticate("tsk_" + "x" * 38) is None  # malformed: refused without any lookup
    assert lookups.call_count == 1


def test_readiness_is_computed_at_most_once_a_second():
    from app.api.health import Recent

    calls = []
    recent = Recent(lambda: calls.append(1) or (200, "", "ready", {"n": len(calls)}), seconds=3600)
    answers = [recent.get() for _ in range(50)]
    assert len(calls) == 1 and all(answer == answers[0] for answer in answers)
    recent.seconds = 0  # stale at once: the next caller computes it again
    assert recent.get()[3] == {"n": 2}


def test_x_forwarded_for_is_believed_from_trusted_proxies_only():
    """PROXY_HOPS=1: nginx on loopback names the client; a client reaching gunicorn itself cannot
    name itself someone else (and take their rate limit)."""
    import ipaddress

    from app.api import TrustedProxies

    seen = []

    def app(environ, start_response):
        seen.append(environ["REMOTE_ADDR"])
        return []

    wrapped = TrustedProxies(app, 1, [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")])
    for peer in ("127.0.0.1", "::1", "203.0.113.9", "not-an-address"):
        wrapped(
            {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": "198.51.100.7", "wsgi.url_scheme": "http"}, None
        )
    assert seen == ["198.51.100.7", "198.51.100.7", "203.0.113.9", "not-an-address"]
