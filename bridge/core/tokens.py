"""Secrets we hand out: API keys, admin tokens, pairing codes; hashed at rest, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = [
    "CROCKFORD",
    "api_key_from_bytes",
    "hash_secret",
    "normalise_pairing_code",
    "pairing_code_from_bytes",
    "secret_matches",
]

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def api_key_from_bytes(prefix: str, random_bytes: bytes) -> str:
    """`<prefix>_<urlsafe base64>` from at least 16 random bytes."""
    if len(random_bytes) < 16:
        raise ValueError("a secret needs at least 128 bits of randomness")
    return prefix + "_" + base64.urlsafe_b64encode(random_bytes).decode("ascii").rstrip("=")


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a high-entropy secret (no salt needed: they are 128+ random bits)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def pairing_code_from_bytes(random_bytes: bytes, length: int = 8) -> str:
    """An easy-to-type code of Crockford base32 characters (8 chars = 40 bits)."""
    if len(random_bytes) < length:
        raise ValueError("not enough random bytes")
    return "".join(CROCKFORD[b % 32] for b in random_bytes[:length])


def normalise_pairing_code(text: str) -> str:
    """Accept what people type: lower case, dashes, spaces, O for 0, I/L for 1."""
    cleaned = text.strip().upper().replace("-", "").replace(" ", "")
    cleaned = cleaned.replace("O", "0").replace("I", "1").replace("L", "1")
    if not cleaned or any(c not in CROCKFORD for c in cleaned):
        raise ValueError("pairing codes are letters and digits (Crockford base32)")
    return cleaned
