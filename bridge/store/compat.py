"""Shop gateway (易支付 / V免签) credentials, the shop's view of its orders, and compat notifies."""

from __future__ import annotations

from bridge.core.models.compat import CompatOrder, Shop
from bridge.core.models.ids import MerchantId, OrderId
from bridge.core.states import DeliveryStatus
from bridge.store.database import Row, Tx

__all__ = [
    "FIRST_PID",
    "get_compat_order",
    "get_compat_order_by_ref",
    "get_merchant",
    "get_merchant_by_pid",
    "insert_compat_order",
    "insert_merchant",
    "insert_notify",
    "is_compat_delivery",
    "set_key",
    "set_merchant_public_key",
]

FIRST_PID = 1000


# The compat key and the platform's private key sign notifies, so they must be recoverable: they
# are sealed at rest like webhook secrets (bridge/store/sealing.py) and opened only in SQL.
_MERCHANT = (
    "SELECT merchant_id, pid, open_secret('compat_merchants.key', key) AS key,"
    " open_secret('compat_merchants.platform_private_key', platform_private_key) AS platform_private_key,"
    " platform_public_key, merchant_public_key FROM compat_merchants"
)
_ORDER = (
    "SELECT order_id, merchant_id, protocol, out_trade_no, money_str, type, name, param, notify_url, return_url,"
    " params_hash, created_at FROM compat_orders"
)


def _shop(r: Row) -> Shop:
    return Shop(MerchantId(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5])


def _compat_order(r: Row) -> CompatOrder:
    return CompatOrder(OrderId(r[0]), MerchantId(r[1]), r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11])


def get_merchant(tx: Tx, merchant_id: str) -> Shop | None:
    r = tx.one(_MERCHANT + " WHERE merchant_id = ?", (merchant_id,))
    return None if r is None else _shop(r)


def get_merchant_by_pid(tx: Tx, pid: int) -> Shop | None:
    r = tx.one(_MERCHANT + " WHERE pid = ?", (pid,))
    return None if r is None else _shop(r)


def insert_merchant(
    tx: Tx, *, merchant_id: str, key: str, platform_private_key: str, platform_public_key: str, now: int
) -> int:
    """Give the merchant the next pid (>= FIRST_PID, in order); return it."""
    row = tx.one("SELECT MAX(pid) FROM compat_merchants")
    pid = max(FIRST_PID, int(row[0]) + 1) if row is not None and row[0] is not None else FIRST_PID
    tx.execute(
        "INSERT INTO compat_merchants (merchant_id, pid, key, platform_private_key, platform_public_key,"
        " created_at, updated_at) VALUES (?, ?, seal_secret('compat_merchants.key', ?),"
        " seal_secret('compat_merchants.platform_private_key', ?), ?, ?, ?)",
        (merchant_id, pid, key, platform_private_key, platform_public_key, now, now),
    )
    return pid


def set_key(tx: Tx, merchant_id: str, key: str, *, now: int) -> None:
    tx.execute(
        "UPDATE compat_merchants SET key = seal_secret('compat_merchants.key', ?), updated_at = ?"
        " WHERE merchant_id = ?",
        (key, now, merchant_id),
    )


def set_merchant_public_key(tx: Tx, merchant_id: str, public_key: str | None, *, now: int) -> None:
    tx.execute(
        "UPDATE compat_merchants SET merchant_public_key = ?, updated_at = ? WHERE merchant_id = ?",
        (public_key, now, merchant_id),
    )


def get_compat_order(tx: Tx, order_id: str) -> CompatOrder | None:
    r = tx.one(_ORDER + " WHERE order_id = ?", (order_id,))
    return None if r is None else _compat_order(r)


def get_compat_order_by_ref(tx: Tx, merchant_id: str, out_trade_no: str) -> CompatOrder | None:
    r = tx.one(_ORDER + " WHERE merchant_id = ? AND out_trade_no = ?", (merchant_id, out_trade_no))
    return None if r is None else _compat_order(r)


def insert_compat_order(
    tx: Tx,
    *,
    order_id: str,
    merchant_id: str,
    protocol: str,
    out_trade_no: str,
    money_str: str,
    pay_type: str | None,
    name: str,
    param: str,
    notify_url: str | None,
    return_url: str | None,
    params_hash: str,
    now: int,
) -> None:
    tx.execute(
        "INSERT INTO compat_orders (order_id, merchant_id, protocol, out_trade_no, money_str, type, name, param,"
        " notify_url, return_url, params_hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            order_id,
            merchant_id,
            protocol,
            out_trade_no,
            money_str,
            pay_type,
            name,
            param,
            notify_url,
            return_url,
            params_hash,
            now,
        ),
    )


def insert_notify(
    tx: Tx,
    *,
    delivery_id: str,
    event_id: str,
    merchant_id: str,
    url: str,
    order_id: str,
    protocol: str,
    fields: str,
    now: int,
) -> None:
    """A pending delivery of the compat notify for `order_id` (due now), tied to the event that caused it."""
    tx.execute(
        "INSERT INTO deliveries (id, event_id, merchant_id, endpoint_id, url, status, attempts,"
        " next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?, 0, ?, ?, ?)",
        (delivery_id, event_id, merchant_id, url, DeliveryStatus.PENDING.value, now, now, now),
    )
    tx.execute(
        "INSERT INTO compat_notifies (delivery_id, order_id, protocol, fields) VALUES (?, ?, ?, ?)",
        (delivery_id, order_id, protocol, fields),
    )


def is_compat_delivery(tx: Tx, delivery_id: str) -> bool:
    return tx.one("SELECT 1 FROM compat_notifies WHERE delivery_id = ?", (delivery_id,)) is not None
