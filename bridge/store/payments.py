"""Payments (what devices saw), the report log (per-device idempotency) and fingerprints."""

from __future__ import annotations

from bridge.core.models.ids import DeviceId, MerchantId, PaymentId
from bridge.core.models.payment import Payment
from bridge.core.models.report import Fingerprint, Report
from bridge.core.sightings import Sighting
from bridge.core.states import IllegalTransition, PaymentStatus, sources
from bridge.store.database import Row, Tx

__all__ = [
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


def find_report(tx: Tx, device_id: str, event_id: str) -> Report | None:
    r = tx.one(
        "SELECT device_id, event_id, seq, received_at, outcome, payment_id FROM reports"
        " WHERE device_id = ? AND event_id = ?",
        (device_id, event_id),
    )
    return None if r is None else Report(DeviceId(r[0]), r[1], r[2], r[3], r[4], r[5])


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


def find_fingerprint(tx: Tx, merchant_id: str, fingerprint: str, *, since: int) -> Fingerprint | None:
    r = tx.one(
        "SELECT merchant_id, fingerprint, seen_at, payment_id FROM fingerprints"
        " WHERE merchant_id = ? AND fingerprint = ? AND seen_at >= ?",
        (merchant_id, fingerprint, since),
    )
    return None if r is None else Fingerprint(MerchantId(r[0]), r[1], r[2], PaymentId(r[3]))


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
) -> list[Sighting]:
    """Payments of this amount and channel observed in [since, until] by other phones linked to a
    receiving account `device_id` is linked to too, each with whether `device_id` already reported it."""
    # `channel IS ?` is SQLite's null-safe equality; PostgreSQL spells it differently, so say which.
    same_channel = "p.channel IS NULL" if channel is None else "p.channel = ?"
    rows = tx.all(
        "SELECT p.id, p.device_id, p.observed_at,"
        " EXISTS (SELECT 1 FROM reports r WHERE r.payment_id = p.id AND r.device_id = ?) AS seen"
        " FROM payments p WHERE p.merchant_id = ? AND p.amount_cents = ? AND p.observed_at BETWEEN ? AND ?"
        f" AND p.kind = 'payment' AND {same_channel} AND p.device_id <> ?"
        " AND EXISTS (SELECT 1 FROM device_accounts a JOIN device_accounts b ON b.account_id = a.account_id"
        " WHERE a.device_id = ? AND b.device_id = p.device_id)",
        (device_id, merchant_id, amount, since, until, *(() if channel is None else (channel,)), device_id, device_id),
    )
    # `seen` is a bool on PostgreSQL, 0 or 1 on SQLite.
    return [Sighting(r[0], r[1], r[2], bool(r[3])) for r in rows]


# Payment's fields, in order: the insert and every read name them (a SELECT * follows the migrations).
_COLUMNS = (
    "id, merchant_id, device_id, kind, channel, amount_cents, status, reason, order_id, late, manual,"
    " observed_at, received_at, event_id, fingerprint, notification"
)
_SELECT = f"SELECT {_COLUMNS} FROM payments"
_INSERT = f"INSERT INTO payments ({_COLUMNS}) VALUES ({', '.join('?' * 16)})"
_STATUS = PaymentStatus._value2member_map_  # text -> member without the Enum call's overhead
# The guard of a resolution (-> matched or -> ignored), from `bridge.core.states.sources(target)`.
_RESOLVABLE = {
    target: "status IN (" + ", ".join(f"'{s.value}'" for s in sources(target)) + ")"
    for target in PaymentStatus
    if sources(target)
}


def _payment(r: Row) -> Payment:
    return Payment(
        PaymentId(r[0]),
        MerchantId(r[1]),
        DeviceId(r[2]),
        r[3],
        r[4],
        r[5],
        _STATUS[r[6]],  # type: ignore[arg-type]  # the map's values are PaymentStatus members
        r[7],
        r[8],
        bool(r[9]),
        bool(r[10]),
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
    )


def insert_payment(tx: Tx, p: Payment) -> None:
    tx.execute(
        _INSERT,
        (
            p.id,
            p.merchant_id,
            p.device_id,
            p.kind,
            p.channel,
            p.amount_cents,
            p.status.value,
            p.reason,
            p.order_id,
            int(p.late),
            int(p.manual),
            p.observed_at,
            p.received_at,
            p.event_id,
            p.fingerprint,
            p.notification,
        ),
    )


def get_payment(tx: Tx, merchant_id: str, payment_id: str) -> Payment | None:
    r = tx.one(f"{_SELECT} WHERE id = ? AND merchant_id = ?", (payment_id, merchant_id))
    return None if r is None else _payment(r)


def list_payments(tx: Tx, merchant_id: str, *, status: str | None, before: str | None, limit: int) -> list[Payment]:
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
    rows = tx.all(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY received_at DESC, id DESC LIMIT ?", params)
    return [_payment(r) for r in rows]


def set_payment_status(
    tx: Tx,
    payment_id: str,
    *,
    status: PaymentStatus,
    reason: str,
    order_id: str | None = None,
    manual: bool = False,
    late: bool = False,
) -> Payment | None:
    """Resolve a payment (-> matched or ignored) from a status that allows it (unmatched); the
    payment as it is now, or None if it was in none of those (nothing changed)."""
    guard = _RESOLVABLE.get(status)
    if guard is None:
        raise IllegalTransition(f"no payment status moves to {status}")
    rows = tx.all(  # all(), not one(): RETURNING's statement must run to its end
        "UPDATE payments SET status = ?, reason = ?, order_id = COALESCE(?, order_id), manual = ?, late = ?"
        f" WHERE id = ? AND {guard} RETURNING {_COLUMNS}",
        (status.value, reason, order_id, int(manual), int(late), payment_id),
    )
    return _payment(rows[0]) if rows else None
