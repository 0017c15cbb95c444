"""A dashboard session as stored: only the hash of its id (the id lives in the browser's cookie)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import MerchantId

__all__ = ["StoredSession"]


@dataclass(frozen=True, slots=True)
class StoredSession:
    id_hash: str
    merchant_id: MerchantId | None  # None: the admin's
    merchant_name: str | None
    created_at: int  # Unix ms
    last_seen_at: int
    expires_at: int
