"""Merchants, receiving accounts and pairing codes."""

from __future__ import annotations

from bridge.core.models.account import Account
from bridge.core.models.ids import AccountId, DeviceId, MerchantId
from bridge.core.models.merchant import Merchant, MerchantUsage
from bridge.core.states import OrderStatus, PaymentStatus
from bridge.store.database import Row, Tx

__all__ = [
    "account_device_ids",
    "accounts_for_merchant",
    "consume_pairing_code",
    "get_account",
    "get_merchant",
    "get_pairing_code",
    "insert_account",
    "insert_merchant",
    "insert_pairing_code",
    "list_merchants",
    "merchant_by_key_hash",
    "ping",
]


def insert_merchant(tx: Tx, *, id: str, name: str, api_key_hash: str, webhook_secret: str, now: int) -> None:
    tx.execute(
        "INSERT INTO merchants (id, name, api_key_hash, webhook_secret, created_at)"
        " VALUES (?, ?, ?, seal_secret('merchants.webhook_secret', ?), ?)",
        (id, name, api_key_hash, webhook_secret, now),
    )


_MERCHANT = "SELECT id, name, api_key_hash, created_at FROM merchants"  # the webhook secret stays sealed here
_ACCOUNT = "SELECT id, merchant_id, channel, name, qr_payload, created_at FROM accounts"


def _merchant(r: Row) -> Merchant:
    return Merchant(MerchantId(r[0]), r[1], r[2], r[3])


def _account(r: Row) -> Account:
    return Account(AccountId(r[0]), MerchantId(r[1]), r[2], r[3], r[4], r[5])


def merchant_by_key_hash(tx: Tx, key_hash: str) -> Merchant | None:
    r = tx.one(f"{_MERCHANT} WHERE api_key_hash = ?", (key_hash,))
    return None if r is None else _merchant(r)


def get_merchant(tx: Tx, merchant_id: str) -> Merchant | None:
    r = tx.one(f"{_MERCHANT} WHERE id = ?", (merchant_id,))
    return None if r is None else _merchant(r)


def insert_account(
    tx: Tx, *, id: str, merchant_id: str, channel: str, name: str, qr_payload: str | None, now: int
) -> None:
    tx.execute(
        "INSERT INTO accounts (id, merchant_id, channel, name, qr_payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (id, merchant_id, channel, name, qr_payload, now),
    )


def get_account(tx: Tx, merchant_id: str, account_id: str) -> Account | None:
    r = tx.one(f"{_ACCOUNT} WHERE id = ? AND merchant_id = ?", (account_id, merchant_id))
    return None if r is None else _account(r)


def accounts_for_merchant(tx: Tx, merchant_id: str) -> list[Account]:
    return [_account(r) for r in tx.all(f"{_ACCOUNT} WHERE merchant_id = ? ORDER BY created_at, id", (merchant_id,))]


def account_device_ids(tx: Tx, account_id: str) -> list[DeviceId]:
    rows = tx.all("SELECT device_id FROM device_accounts WHERE account_id = ? ORDER BY device_id", (account_id,))
    return [DeviceId(r[0]) for r in rows]


def insert_pairing_code(tx: Tx, *, code_hash: str, merchant_id: str, now: int, expires_at: int) -> None:
    tx.execute(
        "INSERT INTO pairing_codes (code_hash, merchant_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (code_hash, merchant_id, now, expires_at),
    )


def get_pairing_code(tx: Tx, code_hash: str) -> Row | None:
    return tx.one("SELECT * FROM pairing_codes WHERE code_hash = ?", (code_hash,))


def consume_pairing_code(tx: Tx, *, code_hash: str, now: int, device_id: str) -> str | None:
    """Mark a live code used; return its merchant id, or None if unknown, used or expired."""
    row = tx.one(
        "SELECT merchant_id FROM pairing_codes WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?",
        (code_hash, now),
    )
    if row is None:
        return None
    changed = tx.execute(
        "UPDATE pairing_codes SET used_at = ?, device_id = ? WHERE code_hash = ? AND used_at IS NULL",
        (now, device_id, code_hash),
    )
    return str(row["merchant_id"]) if changed == 1 else None


def list_merchants(tx: Tx) -> list[MerchantUsage]:
    """Every merchant with its usage: phones, orders (all and paid), unmatched payments, last order time."""
    rows = tx.all(
        "SELECT m.id, m.name, m.created_at,"
        " (SELECT COUNT(*) FROM devices d WHERE d.merchant_id = m.id AND d.revoked_at IS NULL) AS phones,"
        " (SELECT COUNT(*) FROM orders o WHERE o.merchant_id = m.id) AS orders,"
        " (SELECT COUNT(*) FROM orders o WHERE o.merchant_id = m.id AND o.status = ?) AS paid_orders,"
        " (SELECT CAST(COALESCE(SUM(o.amount_cents), 0) AS BIGINT) FROM orders o"  # SUM is numeric on PostgreSQL
        " WHERE o.merchant_id = m.id AND o.status = ?) AS paid_cents,"
        " (SELECT COUNT(*) FROM payments p WHERE p.merchant_id = m.id AND p.status = ?) AS unmatched,"
        " (SELECT MAX(o.created_at) FROM orders o WHERE o.merchant_id = m.id) AS last_order_at"
        " FROM merchants m ORDER BY m.created_at, m.id",
        (OrderStatus.PAID.value, OrderStatus.PAID.value, PaymentStatus.UNMATCHED.value),
    )
    return [MerchantUsage(MerchantId(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]) for r in rows]


def ping(tx: Tx) -> None:
    """A trivial statement: the database answers."""
    tx.one("SELECT 1")
