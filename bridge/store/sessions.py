"""Dashboard sessions: rows keyed by a hash of the session id (the id itself lives only in the cookie)."""

from __future__ import annotations

from bridge.core.models.ids import MerchantId
from bridge.core.models.session import StoredSession
from bridge.store.database import Tx

__all__ = ["delete_expired", "delete_session", "get_session", "insert_session", "touch_session"]


def insert_session(tx: Tx, *, id_hash: str, merchant_id: str | None, now: int, expires_at: int) -> None:
    tx.execute(
        "INSERT INTO sessions (id_hash, merchant_id, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (id_hash, merchant_id, now, now, expires_at),
    )


def get_session(tx: Tx, id_hash: str) -> StoredSession | None:
    """The session and, for a merchant's, the merchant's name."""
    r = tx.one(
        "SELECT s.id_hash, s.merchant_id, m.name AS merchant_name, s.created_at, s.last_seen_at, s.expires_at"
        " FROM sessions s LEFT JOIN merchants m ON m.id = s.merchant_id WHERE s.id_hash = ?",
        (id_hash,),
    )
    if r is None:
        return None
    return StoredSession(
        id_hash=str(r["id_hash"]),
        merchant_id=None if r["merchant_id"] is None else MerchantId(str(r["merchant_id"])),
        merchant_name=None if r["merchant_name"] is None else str(r["merchant_name"]),
        created_at=int(r["created_at"]),
        last_seen_at=int(r["last_seen_at"]),
        expires_at=int(r["expires_at"]),
    )


def touch_session(tx: Tx, id_hash: str, *, now: int) -> None:
    tx.execute("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", (now, id_hash))


def delete_session(tx: Tx, id_hash: str) -> None:
    tx.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))


def delete_expired(tx: Tx, *, now: int, idle_before: int) -> int:
    return tx.execute("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?", (now, idle_before))
