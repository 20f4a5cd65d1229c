"""Completion webhooks: who may be called, how a call is signed, and how a delivery is sent.

- `WebhookPolicy` checks a webhook at submit: https (http only with WEBHOOK_ALLOW_HTTP), no
  credentials, a bounded length, and a host whose every address is a public one (or a host
  named in WEBHOOK_ALLOWED_HOSTS). The same rule is applied again by `GuardedAdapter` to the
  address a delivery actually connects to, so a name that resolves elsewhere later (DNS
  rebinding) is refused too.
- `SigningSecrets`: the secrets a delivery is signed with, Standard Webhooks style (`whsec_`,
  HMAC-SHA256 over `id.timestamp.body`). Where API keys exist each owner has its own, derived
  from SECRET_KEY and the owner's generation (nothing secret is stored; a rotation raises the
  generation and the previous one signs too for WEBHOOK_SECRET_OVERLAP_HOURS). In open mode the
  deployment's WEBHOOK_SECRET signs.
- `Deliveries`: publish, send (one attempt: record it, then DELIVERED, WAITING for the next
  retry, or FAILED), release due retries (beat), recover lost ones (the recovery sweep), list
  and resend by hand.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NameResolutionError

from app.core import logs, metrics
from app.core.database_manager import DatabaseManager
from app.core.errors import BrokerUnavailable, Conflict, InvalidInput, TaskNotFound
from app.core.resources import task_resource, utc_iso
from app.models import task as task_model
from app.models import webhook as webhook_model
from app.models.webhook import DeliveryStatus

logger = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer
KEPT_RESPONSE_BYTES = 1024  # and keep this much of it with the attempt
EVENTS = tuple(webhook_model.EVENTS.values())  # completed, failed, cancelled
# Names that are never a receiver, whatever they resolve to.
BLOCKED_NAMES = {"localhost", "localhost.localdomain", "metadata", "metadata.google.internal"}
USER_AGENT = "Tasker-Webhooks/1"
# The one answer for a delivery's host that is, resolves or rebinds to an internal address: the
# same whatever is listening there.
NOT_PUBLIC = "is not a public address (or resolves to one that is not); only public addresses are called."


class RefusedAddress(Exception):
    """A webhook's host is, or resolves to, an address Tasker does not call."""


def refusal(address: str) -> str | None:
    """Why `address` may not be called (loopback, private, link-local...), or None for a public one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or (ip.sixtofour if ip.sixtofour else None)
        if ip.teredo:
            embedded = ip.teredo[1]
        if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64: the IPv4 address in the low bits
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal(str(embedded))
            return f"{reason} (inside the IPv6 address)" if reason else None
    for test, what in (
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address (cloud metadata lives there)"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
    ):
        if test:
            return what
    if not ip.is_global:
        return "not a public address"
    return None


def is_allowed(entries: frozenset[str], host: str, port: int | None) -> bool:
    """WEBHOOK_ALLOWED_HOSTS names `host` on `port`: as `host:port` (`[v6]:port`), or as `host`
    alone, which opens every port of it."""
    name = host.lower().rstrip(".").strip("[]")
    return name in entries or f"{name}:{port}" in entries or f"[{name}]:{port}" in entries


@dataclass(frozen=True)
class WebhookPolicy:
    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    resolve: Callable[[str, int], list[str]] = lambda host, port: [
        info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    ]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> WebhookPolicy:
        return cls(config["WEBHOOK_ALLOW_HTTP"], frozenset(config["WEBHOOK_ALLOWED_HOSTS"]))

    def allowed(self, host: str, port: int) -> bool:
        return is_allowed(self.allowed_hosts, host, port)

    def check_url(self, url: str, field: str = "webhook.url") -> None:
        """InvalidInput naming `field` and the rule unless Tasker may call `url`."""
        try:
            self._check(url)
        except RefusedAddress as exc:
            raise InvalidInput(f"{field} is not allowed: {exc}", {field: [str(exc)]}) from None

    def _check(self, url: str) -> None:
        if len(url) > MAX_URL_LENGTH:
            raise RefusedAddress(f"Must be at most {MAX_URL_LENGTH} characters.")
        if any(ord(c) < 33 or ord(c) > 126 for c in url):
            raise RefusedAddress(
                "Must be ASCII without spaces or control characters (punycode for other names)."
            )
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise RefusedAddress("Not a valid URL.") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme not in schemes:
            raise RefusedAddress(
                "Must be an http or https URL." if self.allow_http else "Must be an https URL."
            )
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise RefusedAddress(
                "Must not hold credentials (user:password@); the signature authenticates Tasker."
            )
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise RefusedAddress("Must name a host.")
        port = port or (443 if parts.scheme == "https" else 80)
        if not self.allowed(host, port):
            self._check_host(host, port)

    def _check_host(self, host: str, port: int) -> None:
        name = host.lower()
        if name in BLOCKED_NAMES or name.endswith((".localhost", ".internal", ".local")):
            raise RefusedAddress(f"{host} is a local or metadata name.")
        try:
            addresses = self.resolve(host, port)
        except (OSError, UnicodeError):
            raise RefusedAddress(f"{host} could not be resolved.") from None
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise RefusedAddress(f"{host} is {reason}; only public addresses are called.")


# --- one deadline per attempt ----------------------------------------------------------------


class AttemptClock:
    """One wall-clock limit for a whole attempt: name lookup, connect, TLS, headers and body.

    requests' and urllib3's timeouts bound each socket operation, so a receiver that sends a
    byte every few seconds never trips them. A timer thread shuts down the socket of every
    connection the attempt uses once the limit passes; a read blocked on it returns at once and
    the attempt ends as timed out. The connections register themselves (`_GuardedConnection`)
    through a thread-local, so one clock per attempt also holds in a threaded worker.
    """

    _current = threading.local()

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = threading.Event()
        self._connections: list[HTTPConnection] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> AttemptClock:
        AttemptClock._current.clock = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        AttemptClock._current.clock = None

    @classmethod
    def current(cls) -> AttemptClock | None:
        return getattr(cls._current, "clock", None)

    def watch(self, connection: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(connection)
        if self.expired.is_set():
            _shut(connection)

    def _expire(self) -> None:
        self.expired.set()
        with self._lock:
            for connection in self._connections:
                _shut(connection)


def _shut(connection: HTTPConnection) -> None:
    """Both directions of the connection's socket shut (the plain socket's call: an SSL socket's
    own would drop its TLS state under a thread still reading it)."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


# --- connect-time check ---------------------------------------------------------------------


class _GuardedConnection(HTTPConnection):
    """Connects only to a public address, and only to one it checked.

    The host is resolved here, every address checked, and the socket connected to the checked
    address itself (urllib3 2.8's `HTTPConnection._new_conn` connects to `_dns_host`, set for the
    call and put back after; TLS and the Host header keep the name). A name that resolves, or
    rebinds, to an internal address is refused before any packet goes there, with one wording
    whether the port behind it is open or closed, so deliveries cannot map internal ports. The
    peer is checked again after the connect. Scoped to Tasker's webhook sessions
    (GuardedAdapter); the canary tests are tests/unit/test_webhooks.py::
    test_a_connection_to_loopback_is_refused_at_connect and
    test_an_internal_port_open_or_closed_gets_one_answer.
    """

    allowed_hosts: frozenset[str] = frozenset()

    def request(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Every request, on a new or a reused connection, is under its attempt's clock."""
        clock = AttemptClock.current()
        if clock is not None:
            clock.watch(self)
        super().request(*args, **kwargs)

    def _new_conn(self) -> socket.socket:
        if is_allowed(self.allowed_hosts, self.host, self.port):
            return self._checked_clock(super()._new_conn())
        name = self._dns_host
        self._dns_host = self._public_address(name)
        try:
            sock = super()._new_conn()
        finally:
            self._dns_host = name
        if refusal(sock.getpeername()[0]):
            sock.close()
            raise RefusedAddress(f"{self.host} {NOT_PUBLIC}")
        return self._checked_clock(sock)

    def _public_address(self, name: str) -> str:
        try:
            found = socket.getaddrinfo(name, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = [info[4][0] for info in found]
        if not addresses or any(refusal(address) for address in addresses):
            raise RefusedAddress(f"{self.host} {NOT_PUBLIC}")
        return addresses[0]

    @staticmethod
    def _checked_clock(sock: socket.socket) -> socket.socket:
        clock = AttemptClock.current()
        if clock is not None and clock.expired.is_set():
            sock.close()
            raise TimeoutError("the attempt's time limit passed while connecting")
        return sock


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class GuardedAdapter(HTTPAdapter):
    """requests' adapter whose connections check the address they reach (see _GuardedConnection)."""

    def __init__(self, allowed_hosts: frozenset[str]):
        self.allowed_hosts = allowed_hosts
        super().__init__(pool_connections=4, pool_maxsize=4, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        hosts = self.allowed_hosts
        http = type("GuardedHTTP", (_GuardedConnection,), {"allowed_hosts": hosts})
        https = type("GuardedHTTPS", (_GuardedHTTPSConnection,), {"allowed_hosts": hosts})
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }


def guarded_session(allowed_hosts: frozenset[str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: the peer must be the receiver itself
    adapter = GuardedAdapter(allowed_hosts)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


# --- signing ---------------------------------------------------------------------------------


def secret_key_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: `v1,<base64 HMAC-SHA256>` per secret, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key_bytes(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


class NoSigningSecret(InvalidInput):
    pass


class SigningSecrets:
    """Each owner's signing secrets (keys mode), or the deployment's WEBHOOK_SECRET (open mode)."""

    def __init__(
        self, db: DatabaseManager, mode: str, secret_key: str, deployment: list[str], overlap_hours: float
    ):
        self.db = db
        self.per_owner = mode == "keys"
        self.secret_key = secret_key.encode()
        self.deployment = deployment
        self.overlap = timedelta(hours=overlap_hours)

    def available(self) -> bool:
        return self.per_owner or bool(self.deployment)

    def derived(self, owner: str, generation: int) -> str:
        digest = hmac.new(self.secret_key, f"tasker-webhook:{owner}:{generation}".encode(), hashlib.sha256)
        return "whsec_" + base64.b64encode(digest.digest()).decode()

    def signing(self, owner: str) -> list[str]:
        """The secrets a delivery of `owner`'s is signed with: the current one first."""
        if not self.per_owner:
            return list(self.deployment)
        row = self.db.run(lambda c: webhook_model.generation(c, owner))
        if row is None:
            return [self.derived(owner, 1)]
        secrets = [self.derived(owner, row.generation)]
        if row.previous_until is not None and row.previous_until > datetime.now(UTC):
            secrets.append(self.derived(owner, row.generation - 1))
        return secrets

    def current(self, owner: str) -> str | None:
        """The secret `owner`'s deliveries are signed with now (None: webhooks are not available)."""
        secrets = self.signing(owner)
        return secrets[0] if secrets else None

    def rotate(self, owner: str) -> dict[str, Any]:
        """A new secret for `owner`; the previous one signs too for the overlap."""
        if not self.per_owner:
            raise Conflict(
                "In open mode deliveries are signed with WEBHOOK_SECRET: to rotate, set it to the new "
                "secret and the old one, separated by a space, then to the new one alone."
            )
        until = datetime.now(UTC) + self.overlap
        try:
            try:
                generation = self.db.run(lambda c: webhook_model.rotate(c, owner, until))
            except sa.exc.IntegrityError:  # a concurrent first rotation made the row: rotate from it
                generation = self.db.run(lambda c: webhook_model.rotate(c, owner, until))
        except webhook_model.Overlapping as exc:
            when = utc_iso(exc.until)
            raise Conflict(
                f"The secret was rotated already; the one before it signs until {when}. Rotate again "
                "after that, so every secret a receiver may still hold keeps working for the whole overlap.",
                {"previous_valid_until": when},
            ) from None
        return {"secret": self.derived(owner, generation), "previous_valid_until": until}


# --- deliveries ------------------------------------------------------------------------------


@dataclass
class Attempt:
    status_code: int | None = None
    response: str | None = None
    error: str | None = None
    retry_after: float | None = None
    duration_ms: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        """Timeouts, connection errors, 408, 429 and 5xx are tried again; other answers are final."""
        if self.status_code is None:
            return self.error is not None and not self.error.startswith("refused:")
        return self.status_code in (408, 429) or self.status_code >= 500


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (a number, or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError, IndexError):
        return None


class Deliveries:
    def __init__(
        self,
        db: DatabaseManager,
        publish: Callable[[uuid.UUID], None],
        secrets: SigningSecrets,
        policy: WebhookPolicy,
        delays: list[float],
        connect_timeout: float = 3.0,
        total_timeout: float = 10.0,
    ):
        self.db = db
        self._publish = publish
        self.secrets = secrets
        self.policy = policy
        self.delays = delays
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self._sessions = threading.local()  # one per thread: a threaded worker sends in parallel

    @classmethod
    def from_config(
        cls,
        db: DatabaseManager,
        publish: Callable[[uuid.UUID], None],
        config: Mapping[str, Any],
        secret_key: str,
    ) -> Deliveries:
        secrets = SigningSecrets(
            db,
            config["AUTH_MODE"],
            secret_key,
            config["WEBHOOK_SECRET"],
            config["WEBHOOK_SECRET_OVERLAP_HOURS"],
        )
        return cls(
            db,
            publish,
            secrets,
            WebhookPolicy.from_config(config),
            config["WEBHOOK_RETRY_DELAYS"],
            config["WEBHOOK_CONNECT_TIMEOUT_SECONDS"],
            config["WEBHOOK_TIMEOUT_SECONDS"],
        )

    # -- at submit

    def check(self, webhook: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The webhook to store with a task or schedule (events default to every ending); 400 naming
        the field when Tasker may not call it or has no secret to sign with."""
        if webhook is None:
            return None
        if not self.secrets.available():
            rule = "Webhooks need a signing secret: the operator sets WEBHOOK_SECRET (README: Webhooks)."
            raise NoSigningSecret(f"webhook is not available: {rule}", {"webhook": [rule]})
        self.policy.check_url(webhook["url"])
        events = list(dict.fromkeys(webhook.get("events") or EVENTS))
        return {"url": webhook["url"], "events": events}

    # -- sending

    def queue_first_attempt(self, delivery_id: uuid.UUID) -> None:
        """Send the delivery's first attempt to the webhooks queue; if the broker is away, the
        recovery sweep queues it later."""
        try:
            self._publish(delivery_id)
        except BrokerUnavailable as exc:
            logger.warning("delivery %s not queued (the recovery sweep will): %s", delivery_id, exc.message)

    @property
    def session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = guarded_session(self.policy.allowed_hosts)
        return session

    @property
    def cap(self) -> int:
        """Attempts before a delivery is FAILED: the first and one per retry delay."""
        return len(self.delays) + 1

    def deliver(self, delivery_id: uuid.UUID) -> str:
        """One attempt at a QUEUED delivery; what became of it (or `skipped` if it was not QUEUED)."""
        row = self.db.run_statement(lambda c: webhook_model.claim(c, delivery_id))
        if row is None:
            return "skipped"
        with logs.bound(task_id=str(row.task_id)):
            return self._attempt(row)

    def _attempt(self, row: Any) -> str:
        task = self.db.run(lambda c: task_model.get(c, row.task_id))
        if task is None:
            self.db.run(lambda c: webhook_model.finish(c, row.id, DeliveryStatus.FAILED, "task deleted"))
            return DeliveryStatus.FAILED
        resource = task_resource(task)
        event = {"type": f"task.{row.event}", "timestamp": resource["completed_at"], "task": resource}
        body = json.dumps(event, separators=(",", ":")).encode()
        attempt = self.send(row.url, f"msg_{row.id.hex}", body, self.secrets.signing(row.owner))
        return self._settle(row, attempt)

    def send(self, url: str, message_id: str, body: bytes, secrets: list[str]) -> Attempt:
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secrets, message_id, timestamp, body),
        }
        started = time.monotonic()
        attempt = Attempt()
        with AttemptClock(self.total_timeout) as clock:
            try:
                with self.session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=(min(self.connect_timeout, self.total_timeout), self.total_timeout),
                    allow_redirects=False,
                    stream=True,
                ) as answer:
                    attempt.status_code = answer.status_code
                    attempt.retry_after = retry_after_seconds(answer.headers.get("Retry-After"))
                    attempt.response = _read_bounded(answer)
                    if 300 <= answer.status_code < 400:
                        attempt.error = "redirects are not followed: point the webhook at the final URL"
                if clock.expired.is_set():  # a body that ends with its connection, cut by the clock
                    raise TimeoutError
            except RefusedAddress as exc:
                attempt.error = f"refused: {exc}"
            except Exception as exc:  # noqa: BLE001 - whatever ended it (Celery's time limit too) is recorded
                attempt.status_code = None
                attempt.error = self._why_ended(exc, clock)
        attempt.duration_ms = round((time.monotonic() - started) * 1000, 2)
        return attempt

    def _why_ended(self, exc: Exception, clock: AttemptClock) -> str:
        if clock.expired.is_set() or isinstance(exc, requests.Timeout | TimeoutError):
            return (
                f"timed out: the attempt took longer than {self.total_timeout:g} s "
                f"(connect {min(self.connect_timeout, self.total_timeout):g} s, the whole answer "
                f"{self.total_timeout:g} s)"
            )
        if isinstance(exc, requests.RequestException):
            return f"could not connect: {_why(exc)}"
        # Celery's soft time limit (SoftTimeLimitExceeded), or a bug: the attempt still counts.
        return f"ended by {type(exc).__name__}: {str(exc)[:200] or 'no detail'}"

    def _settle(self, row: Any, attempt: Attempt) -> str:
        """Record the attempt and the delivery's next state in one transaction."""
        error = attempt.error or (None if attempt.delivered else f"HTTP {attempt.status_code}")
        if attempt.delivered:
            status, wait = DeliveryStatus.DELIVERED, None
        elif attempt.retryable and row.attempts <= len(self.delays):
            status, wait = DeliveryStatus.WAITING, self._delay(row.attempts, attempt.retry_after)
        else:
            status, wait = DeliveryStatus.FAILED, None
            if attempt.retryable:
                error = f"{error}; gave up after {row.attempts} attempts"

        def write(conn: Any) -> None:
            now = task_model.database_now(conn)
            webhook_model.add_attempt(
                conn,
                row.id,
                attempted_at=now - timedelta(milliseconds=attempt.duration_ms),
                status_code=attempt.status_code,
                duration_ms=attempt.duration_ms,
                response=attempt.response,
                error=attempt.error[:500] if attempt.error else None,
            )
            if wait is None:
                webhook_model.finish(conn, row.id, status, (error or "")[:500] or None)
            else:
                webhook_model.wait_until(conn, row.id, now + timedelta(seconds=wait), (error or "")[:500])

        self.db.run(write)
        outcome = {DeliveryStatus.DELIVERED: "delivered", DeliveryStatus.WAITING: "retry"}.get(
            status, "failed"
        )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        metrics.WEBHOOK_SECONDS.observe(attempt.duration_ms / 1000)
        log = logger.info if status == DeliveryStatus.DELIVERED else logger.warning
        log(
            "delivery %s to task %s: %s (attempt %s%s)",
            row.id,
            row.task_id,
            status,
            row.attempts,
            f", {error}" if error and status != DeliveryStatus.DELIVERED else "",
            extra={"task_id": str(row.task_id), "status": str(status), "duration_ms": attempt.duration_ms},
        )
        return status

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        """The wait before attempt `attempts + 1`: the schedule's, with +-10 % jitter, or longer when
        the receiver's Retry-After asks (up to the schedule's longest wait)."""
        delay = self.delays[attempts - 1] * random.uniform(0.9, 1.1)
        if retry_after is not None:
            delay = max(delay, min(retry_after, max(self.delays)))
        return delay

    # -- beat and the recovery sweep

    def release_due(self, now: datetime) -> int:
        """Queue the WAITING deliveries whose next attempt is due (beat, every scheduler pass)."""
        released = 0
        for delivery_id in self.db.run(lambda c: webhook_model.due(c, now)):
            if not self.db.run(
                lambda c, d=delivery_id: webhook_model.queue_again(c, d, (DeliveryStatus.WAITING,))
            ):
                continue
            try:
                self._publish(delivery_id)
            except BrokerUnavailable:
                self.db.run(lambda c, d=delivery_id: webhook_model.unqueue(c, d))  # the next pass tries again
                raise
            released += 1
        return released

    def recover(self, queued_before: datetime, sending_before: datetime) -> int:
        """Publish again QUEUED deliveries untouched since `queued_before` (their message was lost),
        and SENDING ones since `sending_before` (their worker stopped mid-delivery): that lost
        attempt is recorded and counts, so at the cap the delivery is FAILED instead."""
        count = 0
        for delivery_id in self.db.run(
            lambda c: webhook_model.stuck(c, DeliveryStatus.QUEUED, queued_before)
        ):
            if self.db.run(
                lambda c, d=delivery_id: webhook_model.queue_again(c, d, (DeliveryStatus.QUEUED,))
            ):
                self._publish(delivery_id)
                count += 1
        for delivery_id in self.db.run(
            lambda c: webhook_model.stuck(c, DeliveryStatus.SENDING, sending_before)
        ):
            status = self.db.run(
                lambda c, d=delivery_id: webhook_model.abandon(c, d, sending_before, self.cap)
            )
            if status is None:
                continue
            metrics.WEBHOOK_ATTEMPTS.labels("failed" if status == DeliveryStatus.FAILED else "retry").inc()
            logger.warning("delivery %s: its attempt was lost; %s", delivery_id, status)
            if status == DeliveryStatus.QUEUED:
                self._publish(delivery_id)
            count += 1
        return count

    # -- the API

    def for_task(self, task_id: uuid.UUID, owner: str | None) -> list[dict[str, Any]]:
        def read(conn: Any) -> Any:
            if task_model.get(conn, task_id, owner) is None:
                raise TaskNotFound("Task not found", {"id": str(task_id)})
            return webhook_model.for_task(conn, task_id)

        return [delivery_resource(row, tried) for row, tried in self.db.run(read)]

    def retry(self, task_id: uuid.UUID, delivery_id: uuid.UUID, owner: str | None) -> dict[str, Any]:
        """Send a delivery again now (DELIVERED, FAILED or WAITING); 409 while it is queued or sending."""
        retryable = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.WAITING)

        def requeue(conn: Any) -> Any:
            if task_model.get(conn, task_id, owner) is None:
                raise TaskNotFound("Task not found", {"id": str(task_id)})
            row = webhook_model.get(conn, delivery_id)
            if row is None or row.task_id != task_id:
                raise TaskNotFound("Delivery not found", {"delivery_id": str(delivery_id)})
            if not webhook_model.queue_again(conn, delivery_id, retryable):
                raise Conflict(
                    f"The delivery is {row.status}; it is being sent already.", {"status": row.status}
                )
            return row

        self.db.run(requeue)
        self._publish(delivery_id)  # BrokerUnavailable: a 503; the sweep sends it once the broker is back
        return next(d for d in self.for_task(task_id, owner) if d["id"] == str(delivery_id))


def _why(exc: BaseException) -> str:
    """The socket's own reason under requests' and urllib3's wrappers (`Connection refused`)."""
    seen: Any = exc
    for _ in range(8):
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror
        if seen is None:
            break
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = nested or getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
    return type(exc).__name__


def _read_bounded(answer: requests.Response) -> str:
    """At most MAX_RESPONSE_BYTES of the body (the attempt's clock bounds the time); the first
    KEPT_RESPONSE_BYTES as text."""
    kept = bytearray()
    read = 0
    for chunk in answer.iter_content(8192):
        read += len(chunk)
        if len(kept) < KEPT_RESPONSE_BYTES:
            kept += chunk[: KEPT_RESPONSE_BYTES - len(kept)]
        if read >= MAX_RESPONSE_BYTES:
            break
    return kept.decode("utf-8", "replace")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else utc_iso(value)


def delivery_resource(row: Any, tried: list[Any]) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "webhook_id": f"msg_{row.id.hex}",
        "event": f"task.{row.event}",
        "url": row.url,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at) if row.status == DeliveryStatus.WAITING else None,
        "created_at": _iso(row.created_at),
        "delivered_at": _iso(row.delivered_at),
        "last_error": row.last_error,
        "history": [
            {
                "attempted_at": _iso(a.attempted_at),
                "status_code": a.status_code,
                "duration_ms": a.duration_ms,
                "response": a.response,
                "error": a.error,
            }
            for a in tried
        ],
    }
