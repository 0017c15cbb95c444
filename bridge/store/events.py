"""Events (the merchant's feed) and their fan-out into webhook deliveries, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from bridge.core import codec
from bridge.core.models.endpoint import EndpointKeys, Subscriber, Subscribers
from bridge.core.models.event import Event, Position
from bridge.core.models.ids import EndpointId, EventId, MerchantId
from bridge.core.states import DeliveryStatus
from bridge.store.database import Row, Tx

__all__ = [
    "event_position",
    "events_after",
    "events_unsettled",
    "insert_event",
    "order_events",
    "subscribers",
]


def subscribers(tx: Tx, merchant_id: str) -> Subscribers:
    rows = tx.all(
        "SELECT open_secret('merchants.webhook_secret', m.webhook_secret) AS webhook_secret, e.id, e.url,"
        " e.event_types, open_secret('webhook_endpoints.secret', e.secret) AS secret,"
        " open_secret('webhook_endpoints.secret', e.old_secret) AS old_secret, e.old_secret_expires_at"
        " FROM merchants m LEFT JOIN webhook_endpoints e"
        " ON e.merchant_id = m.id AND e.deleted_at IS NULL AND e.disabled_at IS NULL WHERE m.id = ?",
        (merchant_id,),
    )
    secret = str(rows[0]["webhook_secret"]) if rows else ""
    return Subscribers(tuple(_subscriber(r) for r in rows if r["id"] is not None), secret)


def _subscriber(r: Row) -> Subscriber:
    expires = r["old_secret_expires_at"]
    return Subscriber(
        id=EndpointId(str(r["id"])),
        url=str(r["url"]),
        event_types=tuple(str(t) for t in codec.loads(r["event_types"])),
        keys=EndpointKeys(
            secret=str(r["secret"]),
            old_secret=None if r["old_secret"] is None else str(r["old_secret"]),
            old_secret_expires_at=None if expires is None else int(expires),
        ),
    )


def insert_event(
    tx: Tx,
    *,
    event_id: str,
    merchant_id: str,
    type: str,
    body: str,
    now: int,
    targets: Sequence[tuple[str, str | None, str]],
    claim: tuple[str, int] | None = None,
) -> None:
    """Store the event and one pending delivery per (delivery id, endpoint id or None, url).

    `claim` (instance id, lease end in Unix ms): the deliveries start claimed by the instance that
    sends them from memory at commit, so no other instance's poll takes them meanwhile."""
    by, until = claim if claim is not None else (None, None)
    tx.execute(
        f"INSERT INTO events (id, merchant_id, type, created_at, body, tx) VALUES (?, ?, ?, ?, ?, {_TX[tx.dialect]})",
        (event_id, merchant_id, type, now, body),
    )
    if targets:
        tx.executemany(
            "INSERT INTO deliveries (id, event_id, merchant_id, endpoint_id, url, status, attempts,"
            " next_attempt_at, created_at, updated_at, claimed_by, lease_until)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            [
                (d, event_id, merchant_id, ep, url, DeliveryStatus.PENDING.value, now, now, now, by, until)
                for d, ep, url in targets
            ],
        )


def order_events(tx: Tx, merchant_id: str, order_id: str, *, since: int) -> list[Event]:
    """The `order.*` events raised for one order (created at or after `since`, its creation), oldest first.

    Events carry the order in their body only; LIKE narrows, the caller checks the parsed id."""
    rows = tx.all(
        "SELECT id, type, created_at, body, tx, seq FROM events WHERE merchant_id = ? AND created_at >= ?"
        " AND type LIKE 'order.%' AND body LIKE ? ORDER BY seq",
        (merchant_id, since, f"%{order_id}%"),
    )
    return [_event(r, merchant_id) for r in rows]


# The writing transaction, for the feed's commit order: on PostgreSQL its xid8 (64 bits, never
# reused); SQLite commits one transaction at a time, so seq order is already commit order.
_TX = {"sqlite": "0", "postgresql": "pg_current_xact_id()::text::bigint"}
# Only events of transactions older than every one still running: anything committed later lands
# after them, so a cursor never skips an event that commits late. (A snapshot's xmin; SQLite: all.)
_SETTLED = {"sqlite": "", "postgresql": " AND tx < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"}


def event_position(tx: Tx, merchant_id: str, event_id: str) -> Position | None:
    """Where this merchant's event stands in its feed (None: no such event of this merchant)."""
    row = tx.one("SELECT tx, seq FROM events WHERE id = ? AND merchant_id = ?", (event_id, merchant_id))
    return None if row is None else (int(row[0]), int(row[1]))


def events_after(tx: Tx, merchant_id: str, *, after: Position = (0, 0), limit: int) -> list[Event]:
    """The merchant's events after `after`, in commit order, settled ones only (see `_SETTLED`)."""
    rows = tx.all(
        "SELECT id, type, created_at, body, tx, seq FROM events WHERE merchant_id = ?"
        " AND (tx, seq) > (?, ?)" + _SETTLED[tx.dialect] + " ORDER BY tx, seq LIMIT ?",
        (merchant_id, after[0], after[1], limit),
    )
    return [_event(r, merchant_id) for r in rows]


def _event(r: Row, merchant_id: str) -> Event:
    return Event(
        id=EventId(str(r["id"])),
        merchant_id=MerchantId(merchant_id),
        type=str(r["type"]),
        created_at=int(r["created_at"]),
        body=str(r["body"]),
        position=(int(r["tx"]), int(r["seq"])),
    )


def events_unsettled(tx: Tx, merchant_id: str, *, after: Position) -> bool:
    """Whether committed events after `after` are held back because an older transaction still runs
    (they will be listed once it ends: look again soon)."""
    if tx.dialect != "postgresql":
        return False
    row = tx.one(
        "SELECT EXISTS (SELECT 1 FROM events WHERE merchant_id = ? AND (tx, seq) > (?, ?)"
        " AND tx >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint)",
        (merchant_id, after[0], after[1]),
    )
    return row is not None and bool(row[0])
