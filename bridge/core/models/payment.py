"""A payment as a phone saw it, as the store keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.core.models.ids import DeviceId, MerchantId, OrderId, PaymentId
from bridge.core.states import PaymentStatus

if TYPE_CHECKING:  # order.py imports this module
    from bridge.core.models.order import OrderDetail

__all__ = ["Payment", "UnmatchedPayment"]


@dataclass(frozen=True, slots=True)
class Payment:
    """One reported notification (a payment, or one no parser recognised); times are Unix ms."""

    id: PaymentId
    merchant_id: MerchantId
    device_id: DeviceId  # the phone that reported it
    kind: str  # "payment" or "unrecognised"
    channel: str | None  # the app / wallet that announced it (None: unknown)
    amount_cents: int | None  # None: no amount could be read
    status: PaymentStatus
    reason: str  # why this status: matched, late, no_order, ambiguous, manual, ...
    order_id: OrderId | None  # the order it paid
    late: bool
    manual: bool
    observed_at: int  # when the phone saw the notification
    received_at: int  # when the bridge recorded it
    event_id: str  # the phone's id of the report (idempotency key per device)
    fingerprint: str  # the notification's dedupe fingerprint
    notification: str  # what the phone read (JSON text): parsed once, when rendered


@dataclass(frozen=True, slots=True)
class UnmatchedPayment:
    """A payment waiting for a human, with the phone that saw it and the orders it may pay (best first)."""

    payment: Payment
    device_name: str | None
    suggestions: tuple[OrderDetail, ...]
