"""Receiving accounts (收款码)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import AccountId, DeviceId, MerchantId

__all__ = ["Account", "LinkedAccount"]


@dataclass(frozen=True, slots=True)
class Account:
    """A merchant's receiving account on one channel; its QR code is what the payer scans."""

    id: AccountId
    merchant_id: MerchantId
    channel: str  # alipay, wechat or unionpay
    name: str
    qr_payload: str | None  # the raw QR content (None: no QR registered)
    created_at: int  # Unix ms


@dataclass(frozen=True, slots=True)
class LinkedAccount:
    """A receiving account with the phones linked to it (they report its payments)."""

    account: Account
    device_ids: tuple[DeviceId, ...]
