"""OpenAI chat completions over `requests`: explicit timeouts, no redirects, clear errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from app.tasks import http
from app.tasks.errors import TaskFailed

SERVICE = "OpenAI API"


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
    response = http.send(
        session,
        "POST",
        f"{settings.base_url}/chat/completions",
        SERVICE,
        (settings.connect_timeout, settings.read_timeout),
        json=body,
        headers={"Authorization": f"Bearer {settings.api_key}"},
    )
    http.check(response, SERVICE)
    return _reply_text(response)


def _reply_text(response: requests.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise TaskFailed("OpenAI API returned a response without a reply") from None
    if not isinstance(content, str):
        raise TaskFailed("OpenAI API returned a reply that is not text")
    return content.replace("\x00", "")
