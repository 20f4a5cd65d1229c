"""What every upstream call shares: timeouts, no redirects, and errors that say what happened.

Secrets never reach a message: a failed connection is described by its kind only,
because requests' own messages include the URL, and a query string can hold a key.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from app.tasks.errors import TaskFailed, TransientError

MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class Upstream:
    """Where an upstream API lives and how long to wait for it: the <PREFIX>_* settings."""

    base_url: str
    api_key: str
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_config(cls, config: Any, prefix: str) -> Upstream:
        return cls(
            base_url=config[f"{prefix}_BASE_URL"],
            api_key=config[f"{prefix}_API_KEY"],
            connect_timeout=config[f"{prefix}_CONNECT_TIMEOUT_SECONDS"],
            read_timeout=config[f"{prefix}_READ_TIMEOUT_SECONDS"],
        )

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


def send(
    session: requests.Session,
    method: str,
    url: str,
    service: str,
    timeout: tuple[float, float],
    **kwargs: Any,
) -> requests.Response:
    """One request; a timeout or a failed connection is a TransientError."""
    try:
        return session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise TransientError(f"{service} did not answer within {timeout[1]:g} s") from None
    except requests.ConnectionError as exc:
        raise TransientError(f"Could not connect to {service}: {type(exc).__name__}") from None


def check(
    response: requests.Response,
    service: str,
    permanent: Callable[[requests.Response], str | None] | None = None,
) -> None:
    """Raise for anything but 200: 429 and 5xx are transient, the rest permanent.

    `permanent` may turn a status into a message of its own (say, 404 -> "city not found").
    """
    if response.status_code == 200:
        return
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(describe(response, service), retry_after=parse_retry_after(response))
    raise TaskFailed((permanent and permanent(response)) or describe(response, service))


def describe(response: requests.Response, service: str) -> str:
    """'<service> returned HTTP <status>: <the upstream's own message>'."""
    if 300 <= response.status_code < 400:
        message = "redirects are not followed"
    else:
        message = upstream_message(response)
    text = f"{service} returned HTTP {response.status_code}"
    return f"{text}: {message[:MAX_ERROR_LENGTH]}" if message else text


def upstream_message(response: requests.Response) -> str:
    """An error body's message: {"error": {"message"}} (OpenAI), {"message"} (OpenWeather), or the text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if body.get("message"):
            return str(body["message"])
    return response.text.strip()


def parse_retry_after(response: requests.Response) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
