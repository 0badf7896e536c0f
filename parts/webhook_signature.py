"""How the registry signs a webhook delivery, and how a receiver checks it.

The scheme is GitHub's, which receivers' frameworks already know: the header
``X-Partsbin-Signature-256: sha256=<hex>`` is HMAC-SHA256 of the raw request body under
the subscription's secret. The body carries its own ``sent_at`` (signed with it), so a
receiver can refuse replays older than it likes.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SIGNATURE_HEADER", "EVENT_HEADER", "DELIVERY_HEADER", "sign", "verify_signature"]

SIGNATURE_HEADER = "X-Partsbin-Signature-256"
EVENT_HEADER = "X-Partsbin-Event"
DELIVERY_HEADER = "X-Partsbin-Delivery"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` (the ``X-Partsbin-Signature-256`` value) signs ``body`` under
    ``secret``; compared in constant time.

    Args:
        secret: the subscription's secret, as shown when it was created.
        body: the request body exactly as received (not re-serialised JSON).
        header: the signature header's value, or None when it was missing.

    Returns:
        Whether the delivery came from a registry that knows the secret.
    """
    if not header:
        return False
    return hmac.compare_digest(sign(secret, body), header.strip())
