"""Celery's filesystem transport as the broker: the embedded stack, in the data directory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.core.broker.base import Broker
from app.core.private import private_dir


class FilesystemBroker(Broker):
    kind = "filesystem"
    # Whole messages, and consumers woken when one arrives (the module says how).
    transport = "app.core.broker.filesystem_transport:Transport"
    # Prefork, stopping within a second when idle (the module says why).
    pool = "app.core.broker.prefork:TaskPool"
    embedded = True

    @classmethod
    def transport_options(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """The queue, control and processed folders, private, under the data directory."""
        root = private_dir(Path(config["DATA_DIR"]) / "broker")
        folders = {name: root / name for name in ("queue", "control", "processed")}
        for folder in folders.values():
            private_dir(folder)
        return {
            "data_folder_in": str(folders["queue"]),
            "data_folder_out": str(folders["queue"]),
            "control_folder": str(folders["control"]),
            "processed_folder": str(folders["processed"]),
            # Consumers are woken when a message arrives (filesystem_transport.py); this is only how
            # long a lost wake could be missed.
            "polling_interval": 1.0,
        }
