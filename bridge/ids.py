"""Identifiers and secrets: the only module that draws randomness for them (I/O edge)."""

from __future__ import annotations

import secrets
import time
import uuid

__all__ = ["new_id", "new_uuid", "random_bytes"]


def new_id(prefix: str) -> str:
    """`<prefix>_<12 hex chars of Unix ms><20 hex chars>`: 80 random bits (unguessable enough to be a
    URL id) after the creation time, so new rows land at the right edge of the primary-key and
    unique indexes instead of on random pages (fewer pages dirtied per commit)."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def random_bytes(n: int) -> bytes:
    return secrets.token_bytes(n)


def new_uuid() -> str:
    return str(uuid.uuid4())
