"""Identifiers and secrets: the only module that draws randomness for them (I/O edge)."""

from __future__ import annotations

import secrets
import uuid

__all__ = ["new_id", "new_uuid", "random_bytes"]


def new_id(prefix: str) -> str:
    """`<prefix>_<20 hex chars>`: 80 random bits, unguessable enough to be a URL id."""
    return f"{prefix}_{secrets.token_hex(10)}"


def random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)


def new_uuid() -> str:
    return str(uuid.uuid4())
