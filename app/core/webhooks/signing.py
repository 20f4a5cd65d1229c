"""How a delivery is signed: Standard Webhooks style (`whsec_`, HMAC-SHA256 over
`id.timestamp.body`). Where API keys exist each owner has its own secret, derived from
SECRET_KEY and the owner's generation (nothing secret is stored; a rotation raises the generation
and the previous one signs too for WEBHOOK_SECRET_OVERLAP_HOURS). In open mode the deployment's
WEBHOOK_SECRET signs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from app.core.database_manager import DatabaseManager
from app.core.errors import Conflict, InvalidInput
from app.core.resources import utc_iso
from app.models import webhook as webhook_model


def secret_key_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: `v1,<base64 HMAC-SHA256>` per secret, space-separated."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_key_bytes(s), signed, hashlib.sha256).digest()).decode()
        for s in secrets
    )


class NoSigningSecret(InvalidInput):
    pass


class SigningSecrets:
    """Each owner's signing secrets (keys mode), or the deployment's WEBHOOK_SECRET (open mode)."""

    def __init__(
        self, db: DatabaseManager, mode: str, secret_key: str, deployment: list[str], overlap_hours: float
    ):
        self.db = db
        self.per_owner = mode == "keys"
        self.secret_key = secret_key.encode()
        self.deployment = deployment
        self.overlap = timedelta(hours=overlap_hours)

    def available(self) -> bool:
        return self.per_owner or bool(self.deployment)

    def derived(self, owner: str, generation: int) -> str:
        digest = hmac.new(self.secret_key, f"tasker-webhook:{owner}:{generation}".encode(), hashlib.sha256)
        return "whsec_" + base64.b64encode(digest.digest()).decode()

    def signing(self, owner: str) -> list[str]:
        """The secrets a delivery of `owner`'s is signed with: the current one first."""
        if not self.per_owner:
            return list(self.deployment)
        row = self.db.run(lambda c: webhook_model.generation(c, owner))
        if row is None:
            return [self.derived(owner, 1)]
        secrets = [self.derived(owner, row.generation)]
        if row.previous_until is not None and row.previous_until > datetime.now(UTC):
            secrets.append(self.derived(owner, row.generation - 1))
        return secrets

    def current(self, owner: str) -> str | None:
        """The secret `owner`'s deliveries are signed with now (None: webhooks are not available)."""
        secrets = self.signing(owner)
        return secrets[0] if secrets else None

    def rotate(self, owner: str) -> dict[str, Any]:
        """A new secret for `owner`; the previous one signs too for the overlap."""
        if not self.per_owner:
            raise Conflict(
                "In open mode deliveries are signed with WEBHOOK_SECRET: to rotate, set it to the new "
                "secret and the old one, separated by a space, then to the new one alone."
            )
        until = datetime.now(UTC) + self.overlap
        try:
            try:
                generation = self.db.run(lambda c: webhook_model.rotate(c, owner, until))
            except sa.exc.IntegrityError:  # a concurrent first rotation made the row: rotate from it
                generation = self.db.run(lambda c: webhook_model.rotate(c, owner, until))
        except webhook_model.Overlapping as exc:
            when = utc_iso(exc.until)
            raise Conflict(
                f"The secret was rotated already; the one before it signs until {when}. Rotate again "
                "after that, so every secret a receiver may still hold keeps working for the whole overlap.",
                {"previous_valid_until": when},
            ) from None
        return {"secret": self.derived(owner, generation), "previous_valid_until": until}
