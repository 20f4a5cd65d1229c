"""Secrets a task needs but no row, message or log may hold in clear (http_request's credential
headers): sealed with Fernet (the `cryptography` package) under a key derived from SECRET_KEY.

The row keeps the sealed text beside parameters whose secrets are masked; the message carries
the sealed text; the worker opens it for the run. The API and the workers must share SECRET_KEY
(keys mode requires it; open mode makes one in TASKER_DATA_DIR, shared by the processes of one
host): a worker that cannot open it fails the task, saying so.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

MASK = "********"


class SealError(Exception):
    """Sealed with another SECRET_KEY, or damaged."""


class Sealer:
    def __init__(self, secret_key: str):
        digest = hashlib.sha256(b"tasker-sealed:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, secrets: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(secrets, separators=(",", ":")).encode()).decode()

    def open(self, sealed: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(sealed.encode()))
        except (InvalidToken, ValueError):
            raise SealError(
                "the task's sealed secrets cannot be opened here: "
                "the API and this worker must share SECRET_KEY"
            ) from None

    def merge(self, sealed: str | None, secrets: dict[str, Any]) -> str | None:
        """`sealed` with `secrets` added (a schedule's change keeps the secrets it does not give again)."""
        kept = self.open(sealed) if sealed else {}
        for key, value in secrets.items():
            kept[key] = {**kept.get(key, {}), **value} if isinstance(value, dict) else value
        return self.seal(kept) if kept else None
