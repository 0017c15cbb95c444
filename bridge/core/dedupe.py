"""The identity of a notification for "the phone read the same one again"."""

from __future__ import annotations

import hashlib

__all__ = ["notification_fingerprint"]


def notification_fingerprint(package: str, key: str, when: int, title: str | None, text: str | None) -> str:
    """SHA-256 over package, key, when, title and text (NUL-separated)."""
    h = hashlib.sha256()
    for part in (package, key, str(when), title or "", text or ""):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()
