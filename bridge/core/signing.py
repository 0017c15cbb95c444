"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed with the
base64-decoded part of a `whsec_…` secret. Several secrets (during rotation) give several
space-separated signatures.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["SECRET_PREFIX", "new_secret", "secret_key", "sign", "signature_header", "verify"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - a public prefix, not a secret


def new_secret(random_bytes: bytes) -> str:
    """A `whsec_` secret from at least 16 random bytes (we use 24)."""
    if len(random_bytes) < 16:
        raise ValueError("a webhook secret needs at least 128 bits of randomness")
    return SECRET_PREFIX + base64.b64encode(random_bytes).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_…` secret."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secrets start with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: one signature per live secret."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def verify(
    secret: str, msg_id: str, timestamp: int, body: bytes, header: str, *, now: int, tolerance: int = 300
) -> bool:
    """Check a `webhook-signature` header as a receiver would (constant-time)."""
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    return any(hmac.compare_digest(expected, part) for part in header.split())
