from __future__ import annotations

import logging
import logging.handlers

import pytest

from app.core.logs import configure_logging


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def test_log_file_gets_a_rotating_handler(tmp_path, restore_root_logger):
    path = tmp_path / "tasker.log"
    configure_logging("INFO", str(path))
    logging.getLogger("tasker.test").info("task %s completed", "abc")
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(ours) == 1
    ours[0].flush()
    assert "INFO" in path.read_text() and "task abc completed" in path.read_text()


def test_configuring_twice_keeps_one_handler(restore_root_logger):
    configure_logging("WARNING", None)
    configure_logging("DEBUG", None)
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_tasker_handler", False)]
    assert len(ours) == 1
    assert logging.getLogger().level == logging.DEBUG
