"""PROMETHEUS_MULTIPROC_DIR for a family of processes, set before prometheus_client is imported.

prometheus-client picks its multiprocess mode when it is first imported, from this variable, so
the process that starts the others (gunicorn's master, `python run.py`, a standalone worker with
a metrics port) calls `prepare()` before importing the app: every process it starts then writes
its figures there, and /metrics adds them up. The directory is emptied first: files a previous
run left would be added to this run's figures (PIDs are reused).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def prepare(prefix: str = "tasker-metrics-") -> tuple[Path, bool]:
    """The directory (emptied if set, else a new private one, now set); True if made here."""
    given = os.environ.get(VARIABLE, "").strip()
    if not given:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        os.environ[VARIABLE] = str(path)
        return path, True
    path = Path(given)
    if path.exists():
        for entry in path.iterdir():
            if entry.is_file() and entry.suffix == ".db":
                entry.unlink()
    else:
        path.mkdir(parents=True, mode=0o700)
    return path, False


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
