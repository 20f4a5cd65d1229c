"""Logging to stdout, or to a rotating file under logs/ when LOG_FILE is set; text or JSON lines.

`LOG_FORMAT=json` writes one JSON object per line through python-json-logger's JsonFormatter
(a formatter for the standard logging module, so Celery's, gunicorn's and every library's records
come out the same way, with no second logging API to learn): `time`, `level`, `logger`, `message`,
and, where known, `request_id`, `task_id`, `task_type`, `queue`, `attempt`, and the fields a line
adds (`status`, `duration_ms`, `method`, `endpoint`). The context fields come from `bind()`: the
API binds the request id for the length of a request, the worker binds the task's fields (and the
request id carried in the task message's headers) for the length of a run.
"""

from __future__ import annotations

import logging
import logging.handlers
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
CONTEXT_FIELDS = ("request_id", "task_id", "task_type", "queue", "attempt")
# Fields a line may add with `extra=`; the text format shows them after the message too.
LINE_FIELDS = ("method", "endpoint", "status", "duration_ms")
_MARK = "_tasker_handler"
_context: ContextVar[dict[str, Any] | None] = ContextVar("tasker_log_context", default=None)


def context() -> dict[str, Any]:
    return dict(_context.get() or {})


def bind(**fields: Any) -> Any:
    """Add `fields` (those not None) to every record logged from here on in this context; returns
    the token for unbind(). For code that cannot wrap a block (Flask hooks, Celery's)."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def start(**fields: Any) -> Any:
    """Begin a new context holding only `fields` (those not None), whatever an earlier task left;
    returns the token for unbind(). Celery calls no after_return for a retried, ignored or
    rejected task, so a worker process cannot rely on the previous task to have unbound."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def unbind(token: Any) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """bind() for the length of a block."""
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (a line's own `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """The plain format, with the context and line fields after the message as key=value."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = [
            f"{name}={getattr(record, name)}"
            for name in (*CONTEXT_FIELDS, *LINE_FIELDS)
            if getattr(record, name, None) is not None
        ]
        return f"{line} [{' '.join(fields)}]" if fields else line


# Celery's task lines carry a `data` attribute with the task's arguments (a prompt, say): never written.
HIDDEN_ATTRS = [*RESERVED_ATTRS, "data"]


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        json_ensure_ascii=False,
        reserved_attrs=HIDDEN_ATTRS,
    )


def formatter(log_format: str) -> logging.Formatter:
    return json_formatter() if log_format == "json" else TextFormatter(FORMAT)


def configure_logging(level: str, log_file: str | None, log_format: str = "text") -> None:
    """Install one handler on the root logger (idempotent: a second app replaces it)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handler: logging.Handler
    if log_file:
        path = Path(log_file)
        if not path.is_absolute() and path.parent == Path("."):
            path = Path("logs") / path
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=10_000_000, backupCount=5)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    handler.addFilter(ContextFilter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
    # The app writes one access line per request itself; werkzeug's (python run.py) would repeat it.
    # Tasker's task base class writes each task's start and outcome; Celery's own lines for them
    # ("received", "succeeded in") would repeat those twice per task. Failures still show: Celery
    # logs them at ERROR.
    for repeated in ("werkzeug", "celery.worker.strategy", "celery.app.trace"):
        logging.getLogger(repeated).setLevel(logging.WARNING)
