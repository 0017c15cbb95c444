"""An order as the store keeps it."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.core.models.ids import AccountId, MerchantId, OrderId, PaymentId
from bridge.core.states import OrderStatus

__all__ = ["Order"]


@dataclass(frozen=True, slots=True)
class Order:
    """A request to be paid `pay_amount_cents` (fen) on a channel; times are Unix ms."""

    id: OrderId
    merchant_id: MerchantId
    merchant_order_id: str  # the merchant's own reference, unique per merchant
    channel: str  # alipay, wechat, unionpay or any
    amount_cents: int  # what the merchant asked
    pay_amount_cents: int  # what the payer must pay: unique among pending orders on its slots
    account_id: AccountId | None  # the receiving account whose QR code is shown (None: any / implicit)
    status: OrderStatus
    notify_url: str | None
    return_url: str | None
    description: str | None
    metadata: str  # the merchant's metadata as stored (JSON text): parsed once, when rendered
    params_hash: str  # of the creating request: the same merchant_order_id must come with the same one
    created_at: int
    expires_at: int
    paid_at: int | None
    closed_at: int | None
    payment_id: PaymentId | None  # the payment that paid it
    late: bool  # paid after expires_at, within the late grace
    manual: bool  # a human matched the payment
