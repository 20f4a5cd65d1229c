"""Who http_request may call: the allow-list (names and patterns), the webhooks' address policy
behind it (a stubbed resolver stands for DNS: nothing is sent anywhere), the refusal at connect,
and which headers are credentials."""

from __future__ import annotations

import uuid

import pytest

from app.core.http_targets import HttpTargets
from app.tasks.errors import TaskFailed
from app.tasks.http_target import call, split_secrets
from tests.support import Receiver


def targets(*entries: str, resolves_to: str = "93.184.216.34", **options) -> HttpTargets:
    return HttpTargets(list(entries), resolve=lambda host, port: [resolves_to], **options)


def test_the_type_is_off_until_hosts_are_named_and_needs_a_signing_secret():
    assert targets().refusal("https://api.example.com/") == (
        "http_request is off in this deployment; HTTP_TASK_ALLOWED_HOSTS names the hosts it may call."
    )
    unsigned = targets("api.example.com", signing_available=lambda: False)
    assert "set WEBHOOK_SECRET" in unsigned.refusal("https://api.example.com/")


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://api.example.com/jobs", None),
        ("https://eu.api.example.com/jobs", None),  # *.example.com
        (
            "https://example.com/",
            "example.com is not one of the hosts",
        ),  # the pattern's own domain is not under it
        ("https://api.example.com.evil.test/", "is not one of the hosts"),
        ("http://api.example.com/", "Must be an https URL."),
        ("https://user:pw@api.example.com/", "Must not hold credentials"),
        ("https://metadata.example.com/", None),  # a public address: allowed
    ],
)
def test_names_and_patterns(url, refused):
    answer = targets("*.example.com").refusal(url)
    assert answer is None if refused is None else refused in answer, answer


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("169.254.169.254", "a link-local address (cloud metadata lives there)"),
        ("::1", "a loopback address"),
        ("::ffff:10.0.0.1", "a private address (inside the IPv6 address)"),
        ("fd00::1", "a private address"),
        ("0.0.0.0", "the unspecified address"),
    ],
)
def test_a_pattern_allows_public_addresses_only(address, reason):
    refusal = targets("*.example.com", resolves_to=address).refusal("https://hooks.example.com/x")
    opening = " (an operator who trusts it names it, whole, in HTTP_TASK_ALLOWED_HOSTS)"
    assert refusal == f"hooks.example.com is {reason}; only public addresses are called{opening}."
    # Named whole, the operator said that host is wanted: its private address is called.
    assert targets("hooks.example.com", resolves_to=address).refusal("https://hooks.example.com/x") is None


def test_local_and_metadata_names_are_refused_whatever_they_resolve_to():
    for host in ("metadata.google.internal", "db.internal", "printer.local"):
        refusal = targets("*.internal", "*.local", "*.google.internal").refusal(f"https://{host}/")
        opening = (
            ""
            if host.startswith("metadata")
            else " (an operator who trusts it names it, whole, in HTTP_TASK_ALLOWED_HOSTS)"
        )
        assert refusal == f"{host} is a local or metadata name{opening}."


def test_a_name_that_resolves_to_loopback_at_connect_is_refused_before_a_byte_is_sent():
    """The submit's resolver said public; at connect the name is loopback (DNS rebinding): the
    guarded session refuses it, and the call fails without being retried."""
    receiver = Receiver().start()
    try:
        session = targets("*.localhost").session
        parameters = {"url": f"http://localhost:{receiver.port}/", "method": "POST", "timeout_seconds": 2}
        with pytest.raises(TaskFailed, match="refused: localhost is not a public address"):
            call(session, uuid.uuid4(), parameters, {}, ["whsec_dGVzdHNlY3JldHRlc3RzZWNyZXQ="])
        assert receiver.requests == []
    finally:
        receiver.stop()


def test_credential_headers_are_split_out_and_masked():
    parameters = {
        "url": "https://api.example.com/",
        "headers": {"Authorization": "Bearer a", "Cookie": "c=1", "X-Api-Key": "k", "x_auth_token": "t",
                    "Proxy-Authorization": "p", "X-Client-Secret": "s", "X-Trace": "keep",
                    "Keyboard": "keep"},
    }  # fmt: skip
    shown, secrets = split_secrets(parameters)
    masked = {
        "Authorization",
        "Cookie",
        "X-Api-Key",
        "x_auth_token",
        "Proxy-Authorization",
        "X-Client-Secret",
    }
    assert {name for name, value in shown["headers"].items() if value == "********"} == masked
    assert shown["headers"]["X-Trace"] == "keep" and shown["headers"]["Keyboard"] == "keep"
    assert secrets == {"headers": {name: parameters["headers"][name] for name in masked}}
    # What was shown masked, given back (a schedule's change): no new secret, still masked.
    assert split_secrets(shown) == (shown, {})
    assert split_secrets({"url": "https://a.example.com/", "headers": {}}) == (
        {"url": "https://a.example.com/", "headers": {}},
        {},
    )
