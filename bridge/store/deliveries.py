"""The webhook outbox: deliveries, their attempts, what is due, and who is sending what (claims).

Every UPDATE that moves a delivery's status takes its `WHERE status IN (...)` from
`bridge.core.states.sources(target)`: an illegal move changes no row (the function says so in
its return value), whatever the caller believed. No status is spelled in SQL here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from bridge.core.models.delivery import CompatNotify, Delivery, DeliveryAttempt, Outgoing
from bridge.core.models.ids import DeliveryId, EndpointId, EventId, InstanceId, MerchantId
from bridge.core.states import DeliveryStatus, sources
from bridge.store.database import Row, Tx

__all__ = [
    "claim",
    "claim_outgoing",
    "disable_pending",
    "due",
    "get_delivery",
    "list_attempts",
    "list_deliveries",
    "next_due_after",
    "record_attempt",
    "release",
    "renew",
    "reset_for_retry",
    "sender_backlog",
]

PENDING = DeliveryStatus.PENDING

# A delivery with a compat_notifies row is a shop gateway notify: its fields and the keys to sign them.
_SENDABLE = (
    "SELECT d.id, d.event_id, d.merchant_id, d.endpoint_id, d.url, d.attempts, d.next_attempt_at, d.lease_until,"
    " e.body, e.type AS event_type,"
    " open_secret('webhook_endpoints.secret', w.secret) AS secret,"
    " open_secret('webhook_endpoints.secret', w.old_secret) AS old_secret, w.old_secret_expires_at,"
    " open_secret('merchants.webhook_secret', m.webhook_secret) AS webhook_secret,"
    " c.protocol AS compat_protocol, c.fields AS compat_fields,"
    " open_secret('compat_merchants.key', cm.key) AS compat_key,"
    " open_secret('compat_merchants.platform_private_key', cm.platform_private_key) AS compat_private_key"
    " FROM deliveries d JOIN events e ON e.id = d.event_id JOIN merchants m ON m.id = d.merchant_id"
    " LEFT JOIN webhook_endpoints w ON w.id = d.endpoint_id"
    " LEFT JOIN compat_notifies c ON c.delivery_id = d.id"
    " LEFT JOIN compat_merchants cm ON c.delivery_id IS NOT NULL AND cm.merchant_id = d.merchant_id"
)
_DELIVERY = "SELECT d.*, e.type AS event_type FROM deliveries d JOIN events e ON e.id = d.event_id"


def _in(values: Collection[Any]) -> str:
    return ",".join("?" * len(values))


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _outgoing(row: Row) -> Outgoing:
    compat = None
    if row["compat_protocol"] is not None:
        compat = CompatNotify(
            protocol=str(row["compat_protocol"]),
            fields=str(row["compat_fields"]),
            key=str(row["compat_key"]),
            private_key=str(row["compat_private_key"]),
        )
    endpoint_id = row["endpoint_id"]
    return Outgoing(
        id=DeliveryId(str(row["id"])),
        event_id=EventId(str(row["event_id"])),
        event_type=str(row["event_type"]),
        merchant_id=MerchantId(str(row["merchant_id"])),
        endpoint_id=None if endpoint_id is None else EndpointId(str(endpoint_id)),
        url=str(row["url"]),
        attempts=int(row["attempts"]),
        body=str(row["body"]),
        lease_until=_opt_int(row["lease_until"]),
        secret=_opt_str(row["secret"]),
        old_secret=_opt_str(row["old_secret"]),
        old_secret_expires_at=_opt_int(row["old_secret_expires_at"]),
        webhook_secret=_opt_str(row["webhook_secret"]),
        compat=compat,
    )


def _delivery(row: Row) -> Delivery:
    endpoint_id, claimed_by = row["endpoint_id"], row["claimed_by"]
    return Delivery(
        id=DeliveryId(str(row["id"])),
        event_id=EventId(str(row["event_id"])),
        event_type=str(row["event_type"]),
        merchant_id=MerchantId(str(row["merchant_id"])),
        endpoint_id=None if endpoint_id is None else EndpointId(str(endpoint_id)),
        url=str(row["url"]),
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        next_attempt_at=_opt_int(row["next_attempt_at"]),
        last_status_code=_opt_int(row["last_status_code"]),
        last_error=_opt_str(row["last_error"]),
        created_at=int(row["created_at"]),
        updated_at=int(row["updated_at"]),
        succeeded_at=_opt_int(row["succeeded_at"]),
        claimed_by=None if claimed_by is None else InstanceId(str(claimed_by)),
        lease_until=_opt_int(row["lease_until"]),
    )


def _attempt(row: Row) -> DeliveryAttempt:
    return DeliveryAttempt(
        delivery_id=DeliveryId(str(row["delivery_id"])),
        attempt=int(row["attempt"]),
        at=int(row["at"]),
        status_code=_opt_int(row["status_code"]),
        error=_opt_str(row["error"]),
        duration_ms=int(row["duration_ms"]),
    )


def claim(tx: Tx, ids: Collection[str], *, by: InstanceId, now: int, until: int) -> dict[DeliveryId, int]:
    """Claim those of `ids` that are still due and unclaimed (or whose lease ran out) for instance
    `by` until `until`; return the claimed ones with their current attempt counts.

    On PostgreSQL a row another instance is claiming right now is skipped, not waited for
    (`FOR UPDATE SKIP LOCKED`); on SQLite the single writer already serialises the claims. Either
    way the conditional UPDATE lets one instance alone hold a live claim."""
    if not ids:
        return {}
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    rows = tx.all(
        "UPDATE deliveries SET claimed_by = ?, lease_until = ? WHERE id IN ("
        f"SELECT id FROM deliveries WHERE id IN ({_in(ids)}) AND status = ? AND next_attempt_at <= ?"
        f" AND (lease_until IS NULL OR lease_until <= ?){lock}) RETURNING id, attempts",
        (by, until, *ids, PENDING, now, now),
    )
    return {DeliveryId(str(r[0])): int(r[1]) for r in rows}


def due(tx: Tx, *, now: int, limit: int, per_target: int) -> list[DeliveryId]:
    """Up to `limit` pending deliveries whose time has come and that nobody holds, oldest first.

    At most `per_target` per endpoint (or per notify URL): a dead endpoint with a long backlog can
    neither fill a batch nor starve the others."""
    rows = tx.all(
        "SELECT id FROM (SELECT d.id, d.next_attempt_at, ROW_NUMBER() OVER ("
        " PARTITION BY COALESCE(d.endpoint_id, d.url) ORDER BY d.next_attempt_at, d.id) AS pos"
        " FROM deliveries d WHERE d.status = ? AND d.next_attempt_at <= ?"
        " AND (d.lease_until IS NULL OR d.lease_until <= ?)) due"
        " WHERE due.pos <= ? ORDER BY due.next_attempt_at, due.id LIMIT ?",
        (PENDING, now, now, per_target, limit),
    )
    return [DeliveryId(str(r[0])) for r in rows]


def claim_outgoing(tx: Tx, ids: Collection[str], *, by: InstanceId, now: int, until: int) -> list[Outgoing]:
    """`claim` those of `ids` still free, and return them with what it takes to sign and send them
    (their attempt counts as of the claim), oldest first."""
    claimed = claim(tx, ids, by=by, now=now, until=until)
    if not claimed:
        return []
    rows = tx.all(_SENDABLE + f" WHERE d.id IN ({_in(claimed)}) ORDER BY d.next_attempt_at, d.id", list(claimed))
    return [_outgoing(r) for r in rows]


def renew(tx: Tx, ids: Collection[str], *, by: InstanceId, until: int) -> int:
    """Extend the lease of the deliveries `by` still holds among `ids`; return how many."""
    if not ids:
        return 0
    return tx.execute(
        f"UPDATE deliveries SET lease_until = ? WHERE claimed_by = ? AND status = ? AND id IN ({_in(ids)})",
        (until, by, PENDING, *ids),
    )


def release(tx: Tx, ids: Collection[str] | None, *, by: InstanceId) -> int:
    """Give up the claims `by` holds on `ids` (None: on every pending delivery): due again at once."""
    where = "" if ids is None else f" AND id IN ({_in(ids)})"
    return tx.execute(
        "UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = ? AND status = ?" + where,
        (by, PENDING, *(ids or ())),
    )


def next_due_after(tx: Tx, now: int) -> int | None:
    """When the next pending delivery that is not yet due becomes due (Unix ms), if any."""
    row = tx.one("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = ? AND next_attempt_at > ?", (PENDING, now))
    return None if row is None or row[0] is None else int(row[0])


def record_attempt(
    tx: Tx,
    delivery_id: str,
    *,
    now: int,
    status: DeliveryStatus,
    attempts: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    next_attempt_at: int | None,
) -> bool:
    """Log an attempt and move the delivery from pending to `status` (still pending: a retry at
    `next_attempt_at`), clearing its claim. The log keeps every attempt made; the move is refused
    (False) when the delivery is no longer pending (disabled or deleted while it was being sent)."""
    # The log numbers attempts over the delivery's whole life (manual retries continue the count).
    tx.execute(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error, duration_ms)"
        " VALUES (?, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM delivery_attempts WHERE delivery_id = ?),"
        " ?, ?, ?, ?)",
        (delivery_id, delivery_id, now, status_code, error, duration_ms),
    )
    # Recording needs a pending delivery: a retry keeps it pending, anything else is a move from it.
    guard = (PENDING,) if status is PENDING else sources(status)
    return bool(
        tx.execute(
            "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status_code = ?,"
            " last_error = ?, updated_at = ?, succeeded_at = COALESCE(?, succeeded_at),"
            f" claimed_by = NULL, lease_until = NULL WHERE id = ? AND status IN ({_in(guard)})",
            (
                status,
                attempts,
                next_attempt_at,
                status_code,
                error,
                now,
                now if status is DeliveryStatus.SUCCEEDED else None,
                delivery_id,
                *guard,
            ),
        )
    )


def get_delivery(tx: Tx, merchant_id: str, delivery_id: str) -> Delivery | None:
    row = tx.one(_DELIVERY + " WHERE d.id = ? AND d.merchant_id = ?", (delivery_id, merchant_id))
    return None if row is None else _delivery(row)


def list_deliveries(
    tx: Tx,
    merchant_id: str,
    *,
    status: DeliveryStatus | None,
    event_id: str | None,
    before: str | None,
    limit: int,
) -> list[Delivery]:
    """The merchant's deliveries, newest first, optionally of one status or event, before a cursor."""
    where = ["d.merchant_id = ?"]
    params: list[object] = [merchant_id]
    if status is not None:
        where.append("d.status = ?")
        params.append(status)
    if event_id is not None:
        where.append("d.event_id = ?")
        params.append(event_id)
    if before is not None:
        where.append("(d.created_at, d.id) < (SELECT created_at, id FROM deliveries WHERE id = ? AND merchant_id = ?)")
        params += [before, merchant_id]
    params.append(limit)
    rows = tx.all(
        _DELIVERY + f" WHERE {' AND '.join(where)} ORDER BY d.created_at DESC, d.id DESC LIMIT ?",
        params,
    )
    return [_delivery(r) for r in rows]


def list_attempts(tx: Tx, delivery_id: str) -> list[DeliveryAttempt]:
    rows = tx.all("SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt", (delivery_id,))
    return [_attempt(r) for r in rows]


def reset_for_retry(tx: Tx, delivery_id: str, *, now: int) -> bool:
    """A manual redelivery of a finished delivery: pending again, due now (its attempt log is kept;
    numbering continues). False if it was not finished (a pending one is left alone)."""
    guard = sources(PENDING)
    return bool(
        tx.execute(
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, updated_at = ?, attempts = 0,"
            f" claimed_by = NULL, lease_until = NULL WHERE id = ? AND status IN ({_in(guard)})",
            (PENDING, now, now, delivery_id, *guard),
        )
    )


def disable_pending(tx: Tx, *, endpoint_id: str, now: int, reason: str) -> int:
    """Disable the pending deliveries of an endpoint (it answered 410 Gone, or was deleted); how many."""
    guard = sources(DeliveryStatus.DISABLED)
    return tx.execute(
        "UPDATE deliveries SET status = ?, last_error = ?, updated_at = ?"
        f" WHERE endpoint_id = ? AND status IN ({_in(guard)})",
        (DeliveryStatus.DISABLED, reason, now, endpoint_id, *guard),
    )


def sender_backlog(tx: Tx, *, now: int, late_after_ms: int) -> Row:
    """pending, overdue (due more than `late_after_ms` ago: the sender is behind or stuck), failed,
    and the time of the latest success."""
    row = tx.one(
        "SELECT"
        " (SELECT COUNT(*) FROM deliveries WHERE status = ?) AS pending,"
        " (SELECT COUNT(*) FROM deliveries WHERE status = ? AND next_attempt_at <= ?) AS overdue,"
        " (SELECT COUNT(*) FROM deliveries WHERE status = ?) AS failed,"
        " (SELECT MAX(succeeded_at) FROM deliveries WHERE status = ?) AS last_success_at",
        (PENDING, PENDING, now - late_after_ms, DeliveryStatus.FAILED, DeliveryStatus.SUCCEEDED),
    )
    assert row is not None
    return row
