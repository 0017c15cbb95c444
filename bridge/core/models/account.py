"""Receiving accounts (收款码)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import AccountId, MerchantId

__all__ = ["Account"]


@dataclass(frozen=True, slots=True)
class Account:
    """A merchant's receiving account on one channel; its QR code is what the payer scans."""

    id: AccountId
    merchant_id: MerchantId
    channel: str  # alipay, wechat or unionpay
    name: str
    qr_payload: str | None  # the raw QR content (None: no QR registered)
    created_at: int  # Unix ms
