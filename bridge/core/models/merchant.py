"""Merchants and their usage."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import MerchantId

__all__ = ["Merchant", "MerchantUsage"]


@dataclass(frozen=True, slots=True)
class Merchant:
    """A merchant: its API key is stored as a hash only; its webhook secret stays sealed in the store."""

    id: MerchantId
    name: str
    api_key_hash: str
    created_at: int  # Unix ms


@dataclass(frozen=True, slots=True)
class MerchantUsage:
    """A merchant with its usage: the admin's overview."""

    id: MerchantId
    name: str
    created_at: int  # Unix ms
    phones: int  # devices not revoked
    orders: int
    paid_orders: int
    paid_cents: int  # sum of the paid orders' amounts, fen
    unmatched: int  # payments waiting for a human
    last_order_at: int | None  # Unix ms
