"""`http_request`: call the user's own endpoint, as Cloud Tasks' HTTP targets do.

One call per attempt, signed with Standard Webhooks headers (webhook-id is the task's id) under
the owner's signing secret, through a session whose connections check the address they reach
(app/core/http_targets.py). 2xx completes with the answer; 408, 429 (after its Retry-After), 5xx,
timeouts and lost connections are transient (the retry policy applies); any other answer fails
at once, redirects included (they are not followed).

Credential headers (Authorization, cookies, *-Key, *-Token, *-Secret...) never reach the row,
the message or a log line: `split_secrets` masks them at submit and the run reads them sealed.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import requests

from app.core.sealing import MASK
from app.core.webhooks.clock import AttemptClock
from app.core.webhooks.policy import RefusedAddress
from app.core.webhooks.sending import retry_after_seconds, socket_reason
from app.core.webhooks.signing import sign
from app.tasks.errors import TaskFailed, TransientError

CREDENTIAL = re.compile(r"(^|[-_])(authorization|cookie|key|token|secret|password|signature)$", re.IGNORECASE)
MAX_KEPT_BYTES = 64 * 1024  # of the answer's body, kept in the result
SAFE_HEADERS = ("content-type", "content-length", "content-encoding", "content-language", "etag",
                "last-modified", "location", "retry-after", "cache-control", "date",
                "x-request-id")  # fmt: skip


def is_credential(name: str) -> bool:
    return bool(CREDENTIAL.search(name))


def split_secrets(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parameters with credential headers masked, and those headers (a masked value given back,
    as a schedule's change sends what it was shown, is not a new secret)."""
    headers = parameters.get("headers") or {}
    secret = {name: value for name, value in headers.items() if is_credential(name) and value != MASK}
    if not any(is_credential(name) for name in headers):
        return parameters, {}
    shown = {name: MASK if is_credential(name) else value for name, value in headers.items()}
    return {**parameters, "headers": shown}, ({"headers": secret} if secret else {})


def request_body(parameters: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The bytes sent, and the content type they imply (unless the task's headers give one)."""
    if "json" in parameters:
        return json.dumps(parameters["json"], separators=(",", ":")).encode(), {
            "Content-Type": "application/json"
        }
    if parameters.get("body") is not None:
        return parameters["body"].encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"}
    return b"", {}


def call(
    session: requests.Session,
    task_id: uuid.UUID,
    parameters: dict[str, Any],
    secret_headers: dict[str, str],
    signing_secrets: list[str],
) -> dict[str, Any]:
    """One signed call: the result of a 2xx, TransientError or TaskFailed otherwise."""
    url, timeout = parameters["url"], float(parameters["timeout_seconds"])
    body, implied = request_body(parameters)
    headers = implied | {k: v for k, v in parameters.get("headers", {}).items() if v != MASK} | secret_headers
    timestamp = int(time.time())
    headers |= {
        "webhook-id": str(task_id),
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(signing_secrets, str(task_id), timestamp, body),
    }
    host = urlsplit(url).hostname or url
    started = time.monotonic()
    with AttemptClock(timeout) as clock:
        try:
            with session.request(
                parameters["method"], url, data=body, headers=headers, timeout=(min(10.0, timeout), timeout),
                allow_redirects=False, stream=True,
            ) as answer:  # fmt: skip
                kept, truncated = _read(answer)
            if clock.expired.is_set():
                raise TimeoutError
        except RefusedAddress as exc:
            raise TaskFailed(f"refused: {exc}") from None
        except (requests.Timeout, TimeoutError):
            raise TransientError(f"{host} did not answer within {timeout:g} s") from None
        except requests.RequestException as exc:
            if clock.expired.is_set():
                raise TransientError(f"{host} did not answer within {timeout:g} s") from None
            raise TransientError(f"could not reach {host}: {socket_reason(exc)}") from None
    elapsed_ms = round((time.monotonic() - started) * 1000, 2)
    return _outcome(answer, host, kept, truncated, elapsed_ms)


def _read(answer: requests.Response) -> tuple[bytes, bool]:
    kept = bytearray()
    for chunk in answer.iter_content(8192):
        kept += chunk
        if len(kept) > MAX_KEPT_BYTES:
            return bytes(kept[:MAX_KEPT_BYTES]), True
    return bytes(kept), False


def _outcome(answer: requests.Response, host: str, kept: bytes, truncated: bool, elapsed_ms: float) -> dict:
    code = answer.status_code
    text = kept.decode("utf-8", "replace")
    if 200 <= code < 300:
        parsed: Any = text
        if not truncated and "json" in answer.headers.get("Content-Type", ""):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = text
        return {
            "status_code": code,
            "headers": {name: answer.headers[name] for name in SAFE_HEADERS if name in answer.headers},
            "body": parsed,
            "body_truncated": truncated,
            "elapsed_ms": elapsed_ms,
        }
    if code in (408, 429) or code >= 500:
        raise TransientError(
            f"HTTP {code} from {host}", retry_after_seconds(answer.headers.get("Retry-After"))
        )
    if 300 <= code < 400:
        where = answer.headers.get("Location", "")[:200]
        raise TaskFailed(f"HTTP {code} from {host}: redirects are not followed (Location: {where or 'none'})")
    raise TaskFailed(f"HTTP {code} from {host}: {text[:200]}".rstrip(": "))
