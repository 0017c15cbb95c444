"""Dashboard sessions: rows keyed by a hash of the session id (the id itself lives only in the cookie)."""

from __future__ import annotations

from bridge.store.database import Row, Tx

__all__ = ["delete_expired", "delete_session", "get_session", "insert_session", "touch_session"]


def insert_session(tx: Tx, *, id_hash: str, merchant_id: str | None, now: int, expires_at: int) -> None:
    tx.execute(
        "INSERT INTO sessions (id_hash, merchant_id, created_at, last_seen_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (id_hash, merchant_id, now, now, expires_at),
    )


def get_session(tx: Tx, id_hash: str) -> Row | None:
    """The session and, for a merchant's, the merchant's name."""
    return tx.one(
        "SELECT s.*, m.name AS merchant_name FROM sessions s LEFT JOIN merchants m ON m.id = s.merchant_id"
        " WHERE s.id_hash = ?",
        (id_hash,),
    )


def touch_session(tx: Tx, id_hash: str, *, now: int) -> None:
    tx.execute("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", (now, id_hash))


def delete_session(tx: Tx, id_hash: str) -> None:
    tx.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))


def delete_expired(tx: Tx, *, now: int, idle_before: int) -> int:
    return tx.execute("DELETE FROM sessions WHERE expires_at <= ? OR last_seen_at <= ?", (now, idle_before))
