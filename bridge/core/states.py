"""Order, payment, delivery and device states; allowed transitions are data."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

__all__ = [
    "DeliveryStatus",
    "DeviceStatus",
    "IllegalTransition",
    "OrderStatus",
    "PaymentStatus",
    "sources",
    "transition",
]


class OrderStatus(StrEnum):
    PENDING = "pending"  # waiting for a payment of pay_amount
    PAID = "paid"  # a payment matched (possibly late or manual)
    EXPIRED = "expired"  # expires_at passed with no payment
    CLOSED = "closed"  # the merchant closed it


class PaymentStatus(StrEnum):
    MATCHED = "matched"  # linked to an order
    UNMATCHED = "unmatched"  # no order fits (yet): needs a human
    IGNORED = "ignored"  # a human said it is not for any order


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    SUCCEEDED = "succeeded"  # a 2xx arrived
    FAILED = "failed"  # attempts exhausted (can be retried by hand)
    DISABLED = "disabled"  # the endpoint answered 410 or was deleted


class DeviceStatus(StrEnum):
    ONLINE = "online"  # connected, heartbeating, healthy
    DEGRADED = "degraded"  # connected but something is wrong (listener, battery, backlog)
    OFFLINE = "offline"  # not connected, or silent for 90 s


class IllegalTransition(ValueError):
    pass


_ORDER: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.EXPIRED, OrderStatus.CLOSED}),
    # A late payment (within the grace period) still pays an expired order.
    OrderStatus.EXPIRED: frozenset({OrderStatus.PAID}),
    OrderStatus.PAID: frozenset(),
    OrderStatus.CLOSED: frozenset(),
}
_PAYMENT: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.UNMATCHED: frozenset({PaymentStatus.MATCHED, PaymentStatus.IGNORED}),
    PaymentStatus.MATCHED: frozenset(),
    PaymentStatus.IGNORED: frozenset(),
}
_DELIVERY: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset({DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED, DeliveryStatus.DISABLED}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.DISABLED: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.SUCCEEDED: frozenset({DeliveryStatus.PENDING}),
}
_TABLES: dict[type, dict] = {OrderStatus: _ORDER, PaymentStatus: _PAYMENT, DeliveryStatus: _DELIVERY}  # type: ignore[type-arg]


S = TypeVar("S", OrderStatus, PaymentStatus, DeliveryStatus)


def transition(current: S, target: S) -> S:
    """Return `target` if the move is allowed, else raise IllegalTransition."""
    allowed = _TABLES[type(current)][current]
    if target not in allowed:
        raise IllegalTransition(f"cannot go from {current} to {target}")
    return target


def sources(target: S) -> tuple[S, ...]:
    """Every status from which `target` may be reached, in declaration order: the store's
    `WHERE status IN (...)` guard for a move to `target` comes from here and nowhere else."""
    table = _TABLES[type(target)]
    return tuple(status for status in type(target) if target in table[status])
