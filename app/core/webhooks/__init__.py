"""Completion webhooks, one module per job:

- policy.py: who may be called (at submit, and again at connect: DNS rebinding is refused);
- signing.py: the secrets a delivery is signed with, and the signature;
- clock.py and sending.py: one attempt, bounded by one wall-clock deadline, and what came of it;
- deliveries.py: the deliveries themselves, from the row written with a task's ending to
  DELIVERED or FAILED, with retries, recovery and resending by hand.
"""

from app.core.webhooks.deliveries import EVENTS, Deliveries, delivery_resource
from app.core.webhooks.policy import MAX_URL_LENGTH, NOT_PUBLIC, RefusedAddress, WebhookPolicy, is_allowed
from app.core.webhooks.signing import NoSigningSecret, SigningSecrets, sign

__all__ = [
    "EVENTS",
    "MAX_URL_LENGTH",
    "NOT_PUBLIC",
    "Deliveries",
    "NoSigningSecret",
    "RefusedAddress",
    "SigningSecrets",
    "WebhookPolicy",
    "delivery_resource",
    "is_allowed",
    "sign",
]
