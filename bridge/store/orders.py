"""Orders and the amount locks that keep pending pay amounts unique."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bridge.core.models.ids import MerchantId, OrderId
from bridge.core.models.order import Order
from bridge.core.states import OrderStatus, sources
from bridge.store.database import Row, Tx

__all__ = [
    "due_for_expiry",
    "find_order",
    "fitting_orders",
    "get_order",
    "get_order_by_merchant_ref",
    "held_slots",
    "insert_order",
    "list_orders",
    "lock_amount",
    "match_candidates",
    "release_locks",
    "set_closed",
    "set_expired",
    "set_paid",
    "share_slot",
    "slots_taken",
]


# Named columns in Order's field order (a SELECT * would follow the migrations' order instead).
_COLUMNS = (
    "id, merchant_id, merchant_order_id, channel, amount_cents, pay_amount_cents, account_id, status,"
    " notify_url, return_url, description, metadata, params_hash, created_at, expires_at, paid_at, closed_at,"
    " payment_id, late, manual"
)
_SELECT = f"SELECT {_COLUMNS} FROM orders"
_STATUS = OrderStatus._value2member_map_  # text -> member without the Enum call's overhead


def _order(r: Row) -> Order:
    return Order(
        OrderId(r[0]),
        MerchantId(r[1]),
        r[2],
        r[3],
        r[4],
        r[5],
        r[6],
        _STATUS[r[7]],  # type: ignore[arg-type]  # the map's values are OrderStatus members
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
        r[16],
        r[17],
        bool(r[18]),
        bool(r[19]),
    )


def _in(statuses: Sequence[OrderStatus]) -> str:
    """`status IN ('a', 'b')` from enum members: the guard of a move, written from the transition table."""
    return "status IN (" + ", ".join(f"'{s.value}'" for s in statuses) + ")"


# The guards of the moves this module makes, each from `bridge.core.states.sources(target)`.
_PAYABLE = _in(sources(OrderStatus.PAID))
_CLOSABLE = _in(sources(OrderStatus.CLOSED))
_EXPIRABLE = _in(sources(OrderStatus.EXPIRED))


def get_order(tx: Tx, merchant_id: str, order_id: str) -> Order | None:
    r = tx.one(f"{_SELECT} WHERE id = ? AND merchant_id = ?", (order_id, merchant_id))
    return None if r is None else _order(r)


def find_order(tx: Tx, order_id: str) -> Order | None:
    """An order by id alone, whoever owns it: the checkout page, where the id is the capability."""
    r = tx.one(f"{_SELECT} WHERE id = ?", (order_id,))
    return None if r is None else _order(r)


def held_slots(tx: Tx, order_id: str) -> set[str]:
    """The slots (account ids or "<merchant>:<channel>") whose pay amount this pending order holds."""
    return {str(r[0]) for r in tx.all("SELECT slot FROM amount_locks WHERE order_id = ?", (order_id,))}


def get_order_by_merchant_ref(tx: Tx, merchant_id: str, merchant_order_id: str) -> Order | None:
    r = tx.one(f"{_SELECT} WHERE merchant_id = ? AND merchant_order_id = ?", (merchant_id, merchant_order_id))
    return None if r is None else _order(r)


def slots_taken(tx: Tx, slots: Sequence[str], amounts: Sequence[int]) -> set[tuple[str, int]]:
    """Which (slot, amount) pairs are held by pending orders."""
    if not slots or not amounts:
        return set()
    q = (
        f"SELECT slot, pay_amount_cents FROM amount_locks WHERE slot IN ({','.join('?' * len(slots))})"
        f" AND pay_amount_cents IN ({','.join('?' * len(amounts))})"
    )
    rows = tx.all(q, (*slots, *amounts))
    return {(str(r[0]), int(r[1])) for r in rows}


def lock_amount(tx: Tx, slot: str, amount: int, order_id: str) -> bool:
    """Take (slot, amount) for an order; False if another pending order holds it.

    The primary key (slot, pay_amount_cents) decides, also between bridge processes: on
    PostgreSQL an insert racing another transaction's waits for it to commit, then does nothing.
    """
    n = tx.execute(
        "INSERT INTO amount_locks (slot, pay_amount_cents, order_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        (slot, amount, order_id),
    )
    return n == 1


def share_slot(tx: Tx, *, held: str, also: str) -> int:
    """Every pending order holding a pay amount on slot `held` takes the same amount on slot `also`.

    Used when a slot starts to overlap another (a receiving account is added for a channel whose
    orders held the merchant-wide slot): the amounts already promised stay unique across both.
    """
    return tx.execute(
        "INSERT INTO amount_locks (slot, pay_amount_cents, order_id)"
        " SELECT ?, pay_amount_cents, order_id FROM amount_locks WHERE slot = ?"
        " ON CONFLICT DO NOTHING",
        (also, held),
    )


def release_locks(tx: Tx, order_id: str) -> None:
    tx.execute("DELETE FROM amount_locks WHERE order_id = ?", (order_id,))


def insert_order(
    tx: Tx,
    *,
    id: str,
    merchant_id: str,
    merchant_order_id: str,
    channel: str,
    amount_cents: int,
    pay_amount_cents: int,
    account_id: str | None,
    notify_url: str | None,
    return_url: str | None,
    description: str | None,
    metadata: str,
    params_hash: str,
    now: int,
    expires_at: int,
) -> Order | None:
    """Insert a pending order and return it; None (nothing written) if the merchant already has one
    with this `merchant_order_id`. On PostgreSQL an insert racing another process's waits for it to
    commit, then does nothing, so the caller can read the winner instead of failing the transaction."""
    rows = tx.all(  # all(), not one(): RETURNING's statement must run to its end
        "INSERT INTO orders (id, merchant_id, merchant_order_id, channel, amount_cents, pay_amount_cents,"
        " account_id, status, notify_url, return_url, description, metadata, params_hash, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        f" ON CONFLICT (merchant_id, merchant_order_id) DO NOTHING RETURNING {_COLUMNS}",
        (
            id,
            merchant_id,
            merchant_order_id,
            channel,
            amount_cents,
            pay_amount_cents,
            account_id,
            OrderStatus.PENDING.value,
            notify_url,
            return_url,
            description,
            metadata,
            params_hash,
            now,
            expires_at,
        ),
    )
    return _order(rows[0]) if rows else None


def list_orders(
    tx: Tx,
    merchant_id: str,
    *,
    merchant_order_id: str | None,
    status: str | None,
    before: str | None,
    limit: int,
    channel: str | None = None,
    created_from: int | None = None,
    created_to: int | None = None,
) -> list[Order]:
    where = ["merchant_id = ?"]
    params: list[object] = [merchant_id]
    filters = (
        ("channel = ?", channel),
        ("created_at >= ?", created_from),
        ("created_at < ?", created_to),
        ("merchant_order_id = ?", merchant_order_id),
        ("status = ?", status),
    )
    for clause, value in filters:
        if value is not None:
            where.append(clause)
            params.append(value)
    if before is not None:
        # The cursor is looked up among this merchant's own rows only: another merchant's id is
        # as unknown as a made-up one (an empty page), so a cursor reveals nothing.
        where.append("(created_at, id) < (SELECT created_at, id FROM orders WHERE id = ? AND merchant_id = ?)")
        params += [before, merchant_id]
    params.append(limit)
    rows = tx.all(f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?", params)
    return [_order(r) for r in rows]


def match_candidates(tx: Tx, merchant_id: str, amount: int, device_id: str, *, since: int) -> list[Order]:
    """Pending or recently expired orders of this amount the reporting device can see.

    A device linked to accounts sees those accounts' orders and `any` orders; a device linked
    to none sees all of its merchant's orders.
    """
    rows = tx.all(
        f"{_SELECT} WHERE merchant_id = ? AND pay_amount_cents = ?"
        f" AND {_PAYABLE} AND +expires_at >= ?"  # unary +: search orders_slot_amount
        " AND (account_id IS NULL"
        " OR account_id IN (SELECT account_id FROM device_accounts WHERE device_id = ?)"
        " OR NOT EXISTS (SELECT 1 FROM device_accounts WHERE device_id = ?))",
        (merchant_id, amount, since, device_id, device_id),
    )
    return [_order(r) for r in rows]


def set_paid(
    tx: Tx, merchant_id: str, order_id: str, *, payment_id: str, now: int, late: bool, manual: bool
) -> Order | None:
    """-> paid from a payable status (pending or expired), releasing its amount lock; the paid order,
    or None if it was in none of those (nothing changed)."""
    rows = tx.all(  # all(), not one(): RETURNING's statement must run to its end
        f"UPDATE orders SET status = ?, paid_at = ?, payment_id = ?, late = ?, manual = ?"
        f" WHERE id = ? AND merchant_id = ? AND {_PAYABLE} RETURNING {_COLUMNS}",
        (OrderStatus.PAID.value, now, payment_id, int(late), int(manual), order_id, merchant_id),
    )
    if not rows:
        return None
    release_locks(tx, order_id)
    return _order(rows[0])


def set_closed(tx: Tx, order_id: str, *, now: int) -> Order | None:
    """-> closed from a closable status (pending), releasing its amount lock; the closed order, or None
    if it was not closable (nothing changed)."""
    rows = tx.all(  # all(), not one(): RETURNING's statement must run to its end
        f"UPDATE orders SET status = ?, closed_at = ? WHERE id = ? AND {_CLOSABLE} RETURNING {_COLUMNS}",
        (OrderStatus.CLOSED.value, now, order_id),
    )
    if not rows:
        return None
    release_locks(tx, order_id)
    return _order(rows[0])


def due_for_expiry(tx: Tx, *, now: int, limit: int, exclude: Collection[str] = ()) -> list[OrderId]:
    """Ids of up to `limit` pending orders whose time is up, soonest first, leaving out `exclude`.

    On PostgreSQL the rows are locked for the caller's transaction and rows another transaction
    holds (another instance's sweep, a payment being matched) are skipped, so sweeps on several
    instances split the work instead of queueing behind each other; `set_expired`'s conditional
    UPDATE keeps each order expired (and announced) once either way."""
    skip = f" AND id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
    lock = " FOR UPDATE SKIP LOCKED" if tx.dialect == "postgresql" else ""
    rows = tx.all(
        f"SELECT id FROM orders WHERE {_EXPIRABLE} AND expires_at <= ?{skip} ORDER BY expires_at, id LIMIT ?" + lock,
        (now, *exclude, limit),
    )
    return [OrderId(r[0]) for r in rows]


def set_expired(tx: Tx, order_id: str) -> Order | None:
    """-> expired from an expirable status (pending), releasing its amount lock; the expired order, or
    None if it was not expirable (nothing changed)."""
    rows = tx.all(  # all(), not one(): RETURNING's statement must run to its end
        f"UPDATE orders SET status = ? WHERE id = ? AND {_EXPIRABLE} RETURNING {_COLUMNS}",
        (OrderStatus.EXPIRED.value, order_id),
    )
    if not rows:
        return None
    release_locks(tx, order_id)
    return _order(rows[0])


def fitting_orders(
    tx: Tx, merchant_id: str, amount: int, channel: str | None, *, since: int, limit: int
) -> list[Order]:
    """Pending or recently expired orders a payment of `amount` may have been meant for: the pay amount
    or the asked amount is equal, the channel fits (or is unknown), and it expired after `since`.
    Exact pay amounts first, then the newest."""
    channel_rule = "" if channel is None else " AND channel IN (?, 'any')"
    params: list[object] = [merchant_id, since, amount, amount, *([] if channel is None else [channel]), amount, limit]
    rows = tx.all(
        f"{_SELECT} WHERE merchant_id = ? AND {_PAYABLE} AND expires_at >= ?"
        f" AND (pay_amount_cents = ? OR amount_cents = ?){channel_rule}"
        " ORDER BY (pay_amount_cents = ?) DESC, created_at DESC LIMIT ?",
        params,
    )
    return [_order(r) for r in rows]
