"""JSON shapes of our objects (the API contract). Records (devices: rows) in, dicts out."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from bridge.clock import rfc3339
from bridge.core import codec
from bridge.core.amounts import format_fen
from bridge.core.models.account import Account, LinkedAccount
from bridge.core.models.compat import Shop
from bridge.core.models.device import Device
from bridge.core.models.merchant import Merchant, MerchantUsage
from bridge.core.models.order import Order, OrderDetail, OrderTimeline
from bridge.core.models.page import Page
from bridge.core.models.payment import Payment, UnmatchedPayment
from bridge.services.checkout import checkout_url
from bridge.services.context import Context

T = TypeVar("T")

__all__ = [
    "account_json",
    "credentials_json",
    "device_json",
    "linked_account_json",
    "merchant_json",
    "merchant_usage_json",
    "order_json",
    "order_out",
    "page_json",
    "payment_json",
    "timeline_json",
    "unmatched_json",
    "utc_day",
]


def utc_day(ms: int) -> str:
    """Unix ms -> "YYYY-MM-DD" in UTC: the day `reports_today` counts."""
    return _day(ms // 86_400_000)


@functools.lru_cache(maxsize=64)
def _day(days: int) -> str:
    return datetime.fromtimestamp(days * 86_400, tz=UTC).strftime("%Y-%m-%d")


def account_json(a: Account | None) -> dict[str, Any] | None:
    return None if a is None else account_json_of(a)


def order_json(o: Order, account: Account | None = None, *, checkout_url: str) -> dict[str, Any]:
    return {
        "id": o.id,
        "merchant_order_id": o.merchant_order_id,
        "status": o.status.value,
        "channel": o.channel,
        "amount": format_fen(o.amount_cents),
        "amount_cents": o.amount_cents,
        "pay_amount": format_fen(o.pay_amount_cents),
        "pay_amount_cents": o.pay_amount_cents,
        "account": account_json(account),
        "notify_url": o.notify_url,
        "return_url": o.return_url,
        "description": o.description,
        "checkout_url": checkout_url,
        "created_at": rfc3339(o.created_at),
        "expires_at": rfc3339(o.expires_at),
        "paid_at": rfc3339(o.paid_at),
        "closed_at": rfc3339(o.closed_at),
        "payment_id": o.payment_id,
        "late": o.late,
        "manual": o.manual,
        "metadata": codec.loads(o.metadata),
    }


def payment_json(p: Payment) -> dict[str, Any]:
    amount = p.amount_cents
    return {
        "id": p.id,
        "status": p.status.value,
        "reason": p.reason,
        "kind": p.kind,
        "channel": p.channel,
        "amount": None if amount is None else format_fen(amount),
        "amount_cents": amount,
        "order_id": p.order_id,
        "late": p.late,
        "manual": p.manual,
        "device_id": p.device_id,
        "event_id": p.event_id,
        "observed_at": rfc3339(p.observed_at),
        "received_at": rfc3339(p.received_at),
        "notification": codec.loads(p.notification),
    }


def order_out(ctx: Context, d: OrderDetail) -> dict[str, Any]:
    """An order as the API shows it (with its account and the absolute checkout URL)."""
    return order_json(d.order, d.account, checkout_url=checkout_url(ctx, d.order.id))


def page_json(page: Page[T], item: Callable[[T], dict[str, Any]]) -> dict[str, Any]:
    return {"data": [item(x) for x in page.items], "has_more": page.has_more}


def timeline_json(ctx: Context, t: OrderTimeline) -> dict[str, Any]:
    payment = None
    if t.payment is not None:
        payment = payment_json(t.payment)
        payment["device_name"] = t.payment_device_name
    return {"order": order_out(ctx, t.detail), "payment": payment, "events": list(t.events)}


def unmatched_json(ctx: Context, u: UnmatchedPayment) -> dict[str, Any]:
    p = payment_json(u.payment)
    p["device_name"] = u.device_name
    p["suggestions"] = [order_out(ctx, d) for d in u.suggestions]
    return p


def linked_account_json(la: LinkedAccount) -> dict[str, Any]:
    out: dict[str, Any] = {**account_json_of(la.account), "device_ids": list(la.device_ids)}
    return out


def account_json_of(a: Account) -> dict[str, Any]:
    return {"id": a.id, "name": a.name, "channel": a.channel, "qr_payload": a.qr_payload}


def credentials_json(ctx: Context, shop: Shop) -> dict[str, Any]:
    """`GET /v1/compat`: pid, key, the gateway URLs and the RSA public keys."""
    base = ctx.public_url("").rstrip("/")
    return {
        "pid": shop.pid,
        "key": shop.key,
        "epay_url": f"{base}/",
        "submit_url": f"{base}/submit.php",
        "vmq_url": f"{base}/vmq/{shop.pid}/",
        "platform_public_key": shop.platform_public_key,
        "merchant_public_key": shop.merchant_public_key,
    }


def merchant_json(m: Merchant) -> dict[str, Any]:
    return {"id": m.id, "name": m.name, "created_at": rfc3339(m.created_at)}


def merchant_usage_json(m: MerchantUsage) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "created_at": rfc3339(m.created_at),
        "phones": m.phones,
        "orders": m.orders,
        "paid_orders": m.paid_orders,
        "paid_amount": format_fen(m.paid_cents),
        "unmatched_payments": m.unmatched,
        "last_order_at": rfc3339(m.last_order_at),
    }


def device_json(device: Device, today: str | None = None) -> dict[str, Any]:
    """A device; `today` (YYYY-MM-DD, UTC) makes `reports_today` 0 when the last report was another day."""
    heartbeat = codec.loads(device.last_heartbeat) if device.last_heartbeat else None
    return {
        "id": device.id,
        "merchant_id": device.merchant_id,
        "name": device.name,
        "channels": list(device.channels),
        "status": device.status.value,
        "status_reasons": list(device.status_reasons),
        "revoked": device.revoked,
        "revoked_at": rfc3339(device.revoked_at),
        "created_at": rfc3339(device.created_at),
        "last_seen": rfc3339(device.last_seen),
        "connected_since": rfc3339(device.connected_since),
        "last_heartbeat": heartbeat,
        "last_heartbeat_at": rfc3339(device.last_heartbeat_at),
        "last_report_at": rfc3339(device.last_report_at),
        "reports_today": device.reports_today if today is None or device.reports_day == today else 0,
        "last_seq": device.last_seq,
    }
