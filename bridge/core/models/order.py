"""An order as the store keeps it, and the compositions services hand to the web layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.core.models.account import Account
from bridge.core.models.ids import AccountId, MerchantId, OrderId, PaymentId
from bridge.core.models.payment import Payment
from bridge.core.states import OrderStatus

__all__ = ["Order", "OrderDetail", "OrderTimeline"]


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


@dataclass(frozen=True, slots=True)
class OrderDetail:
    """An order with the receiving account whose QR code it shows: what the API renders as an order."""

    order: Order
    account: Account | None


@dataclass(frozen=True, slots=True)
class OrderTimeline:
    """An order with what happened to it: the payment that paid it (and the phone that saw it), and every
    `order.*` event with its deliveries (rendered by the deliveries' side, as JSON objects)."""

    detail: OrderDetail
    payment: Payment | None
    payment_device_name: str | None
    events: tuple[dict[str, Any], ...]
