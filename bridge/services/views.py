"""JSON shapes of our objects (the API contract). Rows in, dicts out."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.clock import rfc3339
from bridge.core import codec
from bridge.core.amounts import format_fen
from bridge.core.models.device import Device
from bridge.store.database import Row

__all__ = ["account_json", "device_json", "order_json", "payment_json", "utc_day"]


def utc_day(ms: int) -> str:
    """Unix ms -> "YYYY-MM-DD" in UTC: the day `reports_today` counts."""
    return _day(ms // 86_400_000)


@functools.lru_cache(maxsize=64)
def _day(days: int) -> str:
    return datetime.fromtimestamp(days * 86_400, tz=UTC).strftime("%Y-%m-%d")


def account_json(row: Row | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"id": row["id"], "name": row["name"], "channel": row["channel"], "qr_payload": row["qr_payload"]}


def order_json(row: Row, account: Row | None = None, *, checkout_url: str) -> dict[str, Any]:
    return {
        "id": row["id"],
        "merchant_order_id": row["merchant_order_id"],
        "status": row["status"],
        "channel": row["channel"],
        "amount": format_fen(row["amount_cents"]),
        "amount_cents": row["amount_cents"],
        "pay_amount": format_fen(row["pay_amount_cents"]),
        "pay_amount_cents": row["pay_amount_cents"],
        "account": account_json(account),
        "notify_url": row["notify_url"],
        "return_url": row["return_url"],
        "description": row["description"],
        "checkout_url": checkout_url,
        "created_at": rfc3339(row["created_at"]),
        "expires_at": rfc3339(row["expires_at"]),
        "paid_at": rfc3339(row["paid_at"]),
        "closed_at": rfc3339(row["closed_at"]),
        "payment_id": row["payment_id"],
        "late": bool(row["late"]),
        "manual": bool(row["manual"]),
        "metadata": codec.loads(row["metadata"]),
    }


def payment_json(row: Row | Mapping[str, Any]) -> dict[str, Any]:
    amount = row["amount_cents"]
    note = codec.loads(row["notification"])
    return {
        "id": row["id"],
        "status": row["status"],
        "reason": row["reason"],
        "kind": row["kind"],
        "channel": row["channel"],
        "amount": None if amount is None else format_fen(amount),
        "amount_cents": amount,
        "order_id": row["order_id"],
        "late": bool(row["late"]),
        "manual": bool(row["manual"]),
        "device_id": row["device_id"],
        "event_id": row["event_id"],
        "observed_at": rfc3339(row["observed_at"]),
        "received_at": rfc3339(row["received_at"]),
        "notification": note,
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
