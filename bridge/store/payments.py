"""Payments (what devices saw), the report log (per-device idempotency) and fingerprints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.store.database import Row, Tx

__all__ = [
    "PAYMENT_COLUMNS",
    "claim_fingerprint",
    "find_fingerprint",
    "find_report",
    "get_payment",
    "insert_payment",
    "insert_report",
    "list_payments",
    "point_fingerprint",
    "set_payment_status",
    "set_report_duplicate",
    "sightings",
]


def find_report(tx: Tx, device_id: str, event_id: str) -> Row | None:
    return tx.one("SELECT * FROM reports WHERE device_id = ? AND event_id = ?", (device_id, event_id))


def insert_report(
    tx: Tx, *, device_id: str, event_id: str, seq: int, now: int, outcome: str, payment_id: str | None
) -> bool:
    """Log a report; False (and nothing written) if this device already reported this event id."""
    n = tx.execute(
        "INSERT INTO reports (device_id, event_id, seq, received_at, outcome, payment_id) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (device_id, event_id) DO NOTHING",
        (device_id, event_id, seq, now, outcome, payment_id),
    )
    return n == 1


def set_report_duplicate(tx: Tx, *, device_id: str, event_id: str, payment_id: str) -> None:
    tx.execute(
        "UPDATE reports SET outcome = 'duplicate', payment_id = ? WHERE device_id = ? AND event_id = ?",
        (payment_id, device_id, event_id),
    )


def find_fingerprint(tx: Tx, merchant_id: str, fingerprint: str, *, since: int) -> Row | None:
    return tx.one(
        "SELECT * FROM fingerprints WHERE merchant_id = ? AND fingerprint = ? AND seen_at >= ?",
        (merchant_id, fingerprint, since),
    )


def claim_fingerprint(tx: Tx, *, merchant_id: str, fingerprint: str, now: int, payment_id: str, since: int) -> bool:
    """Record that `payment_id` is this notification; False (nothing written) if the same notification
    was already recorded at or after `since` (a re-read, not a new payment)."""
    n = tx.execute(
        "INSERT INTO fingerprints (merchant_id, fingerprint, seen_at, payment_id) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (merchant_id, fingerprint) DO UPDATE SET seen_at = excluded.seen_at,"
        " payment_id = excluded.payment_id WHERE fingerprints.seen_at < ?",
        (merchant_id, fingerprint, now, payment_id, since),
    )
    return n == 1


def point_fingerprint(tx: Tx, merchant_id: str, fingerprint: str, payment_id: str) -> None:
    """This notification is (a copy of) `payment_id`: a re-read of it is a duplicate of that payment."""
    tx.execute(
        "UPDATE fingerprints SET payment_id = ? WHERE merchant_id = ? AND fingerprint = ?",
        (payment_id, merchant_id, fingerprint),
    )


def sightings(
    tx: Tx, *, merchant_id: str, device_id: str, channel: str | None, amount: int, since: int, until: int
) -> list[Row]:
    """Payments of this amount and channel observed in [since, until] by other phones linked to a
    receiving account `device_id` is linked to too, each with `seen`: whether `device_id` already
    reported it (a bool on PostgreSQL, 0 or 1 on SQLite: read it with bool())."""
    # `channel IS ?` is SQLite's null-safe equality; PostgreSQL spells it differently, so say which.
    same_channel = "p.channel IS NULL" if channel is None else "p.channel = ?"
    return tx.all(
        "SELECT p.id, p.device_id, p.observed_at,"
        " EXISTS (SELECT 1 FROM reports r WHERE r.payment_id = p.id AND r.device_id = ?) AS seen"
        " FROM payments p WHERE p.merchant_id = ? AND p.amount_cents = ? AND p.observed_at BETWEEN ? AND ?"
        f" AND p.kind = 'payment' AND {same_channel} AND p.device_id <> ?"
        " AND EXISTS (SELECT 1 FROM device_accounts a JOIN device_accounts b ON b.account_id = a.account_id"
        " WHERE a.device_id = ? AND b.device_id = p.device_id)",
        (device_id, merchant_id, amount, since, until, *(() if channel is None else (channel,)), device_id, device_id),
    )


PAYMENT_COLUMNS = (
    "id",
    "merchant_id",
    "device_id",
    "kind",
    "channel",
    "amount_cents",
    "status",
    "reason",
    "order_id",
    "late",
    "manual",
    "observed_at",
    "received_at",
    "event_id",
    "fingerprint",
    "notification",
)
_INSERT_PAYMENT = (
    f"INSERT INTO payments ({', '.join(PAYMENT_COLUMNS)}) VALUES ({', '.join('?' * len(PAYMENT_COLUMNS))})"
)


def insert_payment(tx: Tx, row: Mapping[str, Any]) -> None:
    """Insert a payment given every column of PAYMENT_COLUMNS."""
    tx.execute(_INSERT_PAYMENT, [row[c] for c in PAYMENT_COLUMNS])


def get_payment(tx: Tx, merchant_id: str, payment_id: str) -> Row | None:
    return tx.one("SELECT * FROM payments WHERE id = ? AND merchant_id = ?", (payment_id, merchant_id))


def list_payments(tx: Tx, merchant_id: str, *, status: str | None, before: str | None, limit: int) -> list[Row]:
    where = ["merchant_id = ?"]
    params: list[object] = [merchant_id]
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if before is not None:
        # The cursor is looked up among this merchant's own rows only: another merchant's id is
        # as unknown as a made-up one (an empty page), so a cursor reveals nothing.
        where.append("(received_at, id) < (SELECT received_at, id FROM payments WHERE id = ? AND merchant_id = ?)")
        params += [before, merchant_id]
    params.append(limit)
    return tx.all(
        f"SELECT * FROM payments WHERE {' AND '.join(where)} ORDER BY received_at DESC, id DESC LIMIT ?", params
    )


def set_payment_status(
    tx: Tx,
    payment_id: str,
    *,
    status: str,
    reason: str,
    order_id: str | None = None,
    manual: bool = False,
    late: bool = False,
) -> bool:
    n = tx.execute(
        "UPDATE payments SET status = ?, reason = ?, order_id = COALESCE(?, order_id), manual = ?, late = ?"
        " WHERE id = ? AND status = 'unmatched'",
        (status, reason, order_id, int(manual), int(late), payment_id),
    )
    return n == 1
