"""OpenAI chat completions over `requests`: explicit timeouts, no redirects, clear errors."""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

import requests

from app.tasks.errors import TaskFailed, TransientError

MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class OpenAISettings:
    base_url: str
    api_key: str
    default_model: str
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_config(cls, config: Any) -> OpenAISettings:
        return cls(
            base_url=config["OPENAI_BASE_URL"],
            api_key=config["OPENAI_API_KEY"],
            default_model=config["OPENAI_MODEL"],
            connect_timeout=config["OPENAI_CONNECT_TIMEOUT_SECONDS"],
            read_timeout=config["OPENAI_READ_TIMEOUT_SECONDS"],
        )


def chat_completion(
    session: requests.Session,
    settings: OpenAISettings,
    prompt: str,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    """The reply text for `prompt`; raises TaskFailed or TransientError."""
    if not settings.api_key:
        raise TaskFailed("OPENAI_API_KEY is not set on the worker, so query_chatgpt cannot run.")
    body: dict[str, Any] = {
        "model": model or settings.default_model,
        "messages": [{"role": "user", "content": prompt}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    response = _post(session, settings, body)
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(_describe(response), retry_after=parse_retry_after(response))
    if response.status_code != 200:
        raise TaskFailed(_describe(response))
    return _reply_text(response)


def _post(session: requests.Session, settings: OpenAISettings, body: dict[str, Any]) -> requests.Response:
    try:
        return session.post(
            f"{settings.base_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {settings.api_key}"},
            timeout=(settings.connect_timeout, settings.read_timeout),
            allow_redirects=False,
        )
    except requests.Timeout:
        raise TransientError(f"OpenAI API did not answer within {settings.read_timeout:g} s") from None
    except requests.ConnectionError as exc:
        raise TransientError(f"Could not connect to the OpenAI API: {type(exc).__name__}") from None


def _describe(response: requests.Response) -> str:
    message = ""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()
    if 300 <= response.status_code < 400:
        message = "redirects are not followed"
    text = f"OpenAI API returned HTTP {response.status_code}"
    return f"{text}: {str(message)[:MAX_ERROR_LENGTH]}" if message else text


def _reply_text(response: requests.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise TaskFailed("OpenAI API returned a response without a reply") from None
    if not isinstance(content, str):
        raise TaskFailed("OpenAI API returned a reply that is not text")
    return content.replace("\x00", "")


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
