"""OpenAI chat completions over `requests`: explicit timeouts, no redirects, clear errors."""

from __future__ import annotations

from typing import Any

import requests

from app.tasks import http
from app.tasks.errors import TaskFailed

SERVICE = "OpenAI API"


def chat_completion(
    session: requests.Session,
    upstream: http.Upstream,
    default_model: str,
    prompt: str,
    model: str | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    """The reply text for `prompt`; raises TaskFailed or TransientError."""
    if not upstream.api_key:
        raise TaskFailed("OPENAI_API_KEY is not set on the worker, so query_chatgpt cannot run.")
    body: dict[str, Any] = {
        "model": model or default_model,
        "messages": [{"role": "user", "content": prompt}],
    }
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    response = http.send(
        session,
        "POST",
        f"{upstream.base_url}/chat/completions",
        SERVICE,
        upstream.timeout,
        json=body,
        headers={"Authorization": f"Bearer {upstream.api_key}"},
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
