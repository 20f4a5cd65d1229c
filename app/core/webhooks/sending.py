"""One attempt at sending a signed delivery, bounded by one clock, and what came of it."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from app.core.webhooks.clock import AttemptClock
from app.core.webhooks.policy import RefusedAddress, guarded_session
from app.core.webhooks.signing import sign

MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of an answer
KEPT_RESPONSE_BYTES = 1024  # and keep this much of it with the attempt


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


def socket_reason(exc: BaseException) -> str:
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


class Sender:
    """Sends one attempt: signed, through a guarded session of this thread's (a threaded worker
    sends in parallel), within `total_timeout` seconds from the first byte of name lookup to the
    last of the answer."""

    def __init__(
        self, allowed_hosts: frozenset[str], connect_timeout: float = 3.0, total_timeout: float = 10.0
    ):
        self.allowed_hosts = allowed_hosts
        self.connect_timeout = connect_timeout
        self.total_timeout = total_timeout
        self._sessions = threading.local()

    @property
    def session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = guarded_session(self.allowed_hosts)
        return session

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
            return f"could not connect: {socket_reason(exc)}"
        # Celery's soft time limit (SoftTimeLimitExceeded), or a bug: the attempt still counts.
        return f"ended by {type(exc).__name__}: {str(exc)[:200] or 'no detail'}"
