"""Keep secrets and internal addresses out of what Tasker writes and answers.

One Redactor is built from the configuration: it knows every configured secret (upstream API
keys, SECRET_KEY, passwords in URLs) and every configured host and port. Log records pass
through a logging filter that uses it, task errors are redacted before they are stored, and
503 bodies are redacted before they are sent, so they name the dependency and never its address.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

SECRET_SETTINGS = ("OPENAI_API_KEY", "OPENWEATHER_API_KEY", "SECRET_KEY")
URL_SETTINGS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
# What a driver quotes when it cannot connect: 'server at "db" (10.0.0.5), port 5432', 'db:5432',
# '10.0.0.5'. Replaced even when not configured by name (a DNS answer, a replica's address).
_ADDRESS_PATTERNS = [
    re.compile(r'server at "[^"]*"(?: \([^)]*\))?, port \d+'),
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),
    re.compile(r"\[[0-9a-fA-F:.]+\](?::\d+)?"),
]
MASK = "[redacted]"


class Redactor:
    def __init__(self, secrets: Iterable[str], hosts: Iterable[str]):
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.hosts = sorted({h for h in hosts if h}, key=len, reverse=True)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Redactor:
        secrets = [str(config.get(name) or "") for name in SECRET_SETTINGS]
        secrets += list(config.get("WEBHOOK_SECRET") or ())  # a list: the current and the previous
        hosts: list[str] = []
        for name in URL_SETTINGS:
            parts = urlsplit(str(config.get(name) or ""))
            if parts.password:
                secrets.append(parts.password)
            if parts.hostname and parts.port:
                hosts.append(f"{parts.hostname}:{parts.port}")
            if parts.hostname:
                hosts.append(parts.hostname)
        return cls(secrets, hosts)

    def secret(self, text: str) -> str:
        """`text` with every configured secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def address(self, text: str) -> str:
        """`text` with every configured secret, host and port masked (for what clients see)."""
        text = self.secret(text)
        for pattern in _ADDRESS_PATTERNS:
            text = pattern.sub("<address>", text)
        for host in self.hosts:
            text = re.sub(rf"(?<![\w.-]){re.escape(host)}(?![\w-])", "<address>", text)
        return text

    def deep(self, value: Any) -> Any:
        """`value` (strings inside dicts and lists too) through `address`."""
        if isinstance(value, str):
            return self.address(value)
        if isinstance(value, dict):
            return {key: self.deep(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.deep(item) for item in value]
        return value


_installed: list[Redactor] = []  # the one the record factory uses (the newest app's)
# Secrets one task run holds (the credential headers it opened): masked in every line it logs.
_run_secrets: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "tasker_run_secrets", default=()
)


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """The secrets hidden during this scope (a task's run) are forgotten at its end."""
    token = _run_secrets.set(())
    try:
        yield
    finally:
        _run_secrets.reset(token)


def hide(values: Iterable[str]) -> None:
    """Mask `values` in every log line of the current run (see run_scope)."""
    kept = [v for v in values if isinstance(v, str) and len(v) >= 4]
    if kept:
        _run_secrets.set(tuple(sorted({*_run_secrets.get(), *kept}, key=len, reverse=True)))


def _mask(text: str, redactor: Redactor) -> str:
    text = redactor.secret(text)
    for secret in _run_secrets.get():
        text = text.replace(secret, MASK)
    return text


def _redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    message = record.getMessage()
    clean = _mask(message, redactor)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        text = logging.Formatter().formatException(record.exc_info)
        record.exc_text = _mask(text, redactor)
        record.exc_info = None


def install(redactor: Redactor) -> None:
    """Mask secrets in every log record, whatever handler writes it (Celery and gunicorn replace
    handlers, so a record factory rather than a filter on handlers)."""
    if not _installed:
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _installed and (_installed[0].secrets or _run_secrets.get()):
                _redact_record(record, _installed[0])
            return record

        logging.setLogRecordFactory(factory)
    _installed[:] = [redactor]
