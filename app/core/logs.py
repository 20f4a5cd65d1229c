"""Logging to stdout, or to a rotating file under logs/ when LOG_FILE is set."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
_MARK = "_tasker_handler"


def configure_logging(level: str, log_file: str | None) -> None:
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
    handler.setFormatter(logging.Formatter(FORMAT))
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel(level)
