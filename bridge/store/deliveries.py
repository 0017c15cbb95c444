"""The webhook outbox: deliveries, their attempts, and what is due."""

from __future__ import annotations

from collections.abc import Collection

from bridge.store.database import Row, Tx

__all__ = [
    "claim",
    "due_deliveries",
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

# A delivery with a compat_notifies row is a shop gateway notify: its fields and the keys to sign them.
_SENDABLE = (
    "SELECT d.id, d.event_id, d.merchant_id, d.endpoint_id, d.url, d.attempts, d.next_attempt_at,"
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


def due_deliveries(tx: Tx, *, now: int, limit: int, per_target: int, exclude: Collection[str]) -> list[Row]:
    """Pending deliveries whose time has come, oldest first, with what is needed to sign and send them.

    At most `per_target` of them per endpoint (or per notify URL), counting the ones in `exclude`
    (already in flight): a dead endpoint with a long backlog can neither fill a batch nor starve
    the others.
    """
    rows = tx.all(
        "SELECT s.* FROM (SELECT d.id, ROW_NUMBER() OVER ("
        " PARTITION BY COALESCE(d.endpoint_id, d.url) ORDER BY d.next_attempt_at, d.id) AS pos"
        " FROM deliveries d WHERE d.status = 'pending' AND d.next_attempt_at <= ?"
        " AND (d.lease_until IS NULL OR d.lease_until <= ?)) due"
        " JOIN (" + _SENDABLE + ") s ON s.id = due.id"
        " WHERE due.pos <= ? ORDER BY s.next_attempt_at, s.id LIMIT ?",
        (now, now, per_target, limit + len(exclude)),
    )
    return [r for r in rows if r["id"] not in exclude][:limit]


def _in(ids: Collection[str]) -> str:
    return ",".join("?" * len(ids))


def claim(tx: Tx, ids: Collection[str], *, by: str, now: int, until: int) -> dict[str, int]:
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
        f"SELECT id FROM deliveries WHERE id IN ({_in(ids)}) AND status = 'pending' AND next_attempt_at <= ?"
        f" AND (lease_until IS NULL OR lease_until <= ?){lock}) RETURNING id, attempts",
        (by, until, *ids, now, now),
    )
    return {str(r[0]): int(r[1]) for r in rows}


def renew(tx: Tx, ids: Collection[str], *, by: str, until: int) -> int:
    """Extend the lease of the deliveries `by` still holds among `ids`; return how many."""
    if not ids:
        return 0
    return tx.execute(
        f"UPDATE deliveries SET lease_until = ? WHERE claimed_by = ? AND status = 'pending' AND id IN ({_in(ids)})",
        (until, by, *ids),
    )


def release(tx: Tx, ids: Collection[str] | None, *, by: str) -> int:
    """Give up the claims `by` holds on `ids` (None: on every pending delivery): due again at once."""
    where = "" if ids is None else f" AND id IN ({_in(ids)})"
    return tx.execute(
        "UPDATE deliveries SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = ? AND status = 'pending'"
        + where,
        (by, *(ids or ())),
    )


def next_due_after(tx: Tx, now: int) -> int | None:
    """When the next pending delivery that is not yet due becomes due (Unix ms), if any."""
    row = tx.one("SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending' AND next_attempt_at > ?", (now,))
    return None if row is None or row[0] is None else int(row[0])


def record_attempt(
    tx: Tx,
    delivery_id: str,
    *,
    attempt: int,
    now: int,
    status: str,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    next_attempt_at: int | None,
) -> None:
    # The log numbers attempts over the delivery's whole life (manual retries continue the count).
    tx.execute(
        "INSERT INTO delivery_attempts (delivery_id, attempt, at, status_code, error, duration_ms)"
        " VALUES (?, (SELECT COALESCE(MAX(attempt), 0) + 1 FROM delivery_attempts WHERE delivery_id = ?),"
        " ?, ?, ?, ?)",
        (delivery_id, delivery_id, now, status_code, error, duration_ms),
    )
    tx.execute(
        "UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_status_code = ?,"
        " last_error = ?, updated_at = ?, succeeded_at = CASE WHEN ? = 'succeeded' THEN ? ELSE succeeded_at END,"
        " claimed_by = NULL, lease_until = NULL"
        " WHERE id = ? AND status = 'pending'",
        (status, attempt, next_attempt_at, status_code, error, now, status, now, delivery_id),
    )


def get_delivery(tx: Tx, merchant_id: str, delivery_id: str) -> Row | None:
    return tx.one(
        "SELECT d.*, e.type AS event_type FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.id = ? AND d.merchant_id = ?",
        (delivery_id, merchant_id),
    )


def list_deliveries(
    tx: Tx, merchant_id: str, *, status: str | None, event_id: str | None, before: str | None, limit: int
) -> list[Row]:
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
    return tx.all(
        "SELECT d.*, e.type AS event_type FROM deliveries d JOIN events e ON e.id = d.event_id"
        f" WHERE {' AND '.join(where)} ORDER BY d.created_at DESC, d.id DESC LIMIT ?",
        params,
    )


def list_attempts(tx: Tx, delivery_id: str) -> list[Row]:
    return tx.all("SELECT * FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt", (delivery_id,))


def reset_for_retry(tx: Tx, delivery_id: str, *, now: int) -> None:
    """A manual redelivery: pending again, due now. Its attempt log is kept; numbering continues."""
    tx.execute(
        "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, updated_at = ?, attempts = 0 WHERE id = ?",
        (now, now, delivery_id),
    )


def sender_backlog(tx: Tx, *, now: int, late_after_ms: int) -> Row:
    """pending, overdue (due more than `late_after_ms` ago: the sender is behind or stuck), failed,
    and the time of the latest success."""
    row = tx.one(
        "SELECT"
        " (SELECT COUNT(*) FROM deliveries WHERE status = 'pending') AS pending,"
        " (SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?) AS overdue,"
        " (SELECT COUNT(*) FROM deliveries WHERE status = 'failed') AS failed,"
        " (SELECT MAX(succeeded_at) FROM deliveries WHERE status = 'succeeded') AS last_success_at",
        (now - late_after_ms,),
    )
    assert row is not None
    return row
