"""Webhook endpoints: where integrators want events, and the secrets that sign them (stored sealed:
bridge.store.sealing; `SELECT *` rows carry them sealed, as nothing but signing needs them)."""

from __future__ import annotations

import json

from bridge.store.database import Row, Tx

__all__ = [
    "count_endpoints",
    "disable_endpoint",
    "get_endpoint",
    "insert_endpoint",
    "list_endpoints",
    "rotate_secret",
    "soft_delete_endpoint",
]


def insert_endpoint(
    tx: Tx, *, id: str, merchant_id: str, url: str, event_types: list[str], secret: str, now: int
) -> None:
    tx.execute(
        "INSERT INTO webhook_endpoints (id, merchant_id, url, event_types, secret, created_at)"
        " VALUES (?, ?, ?, ?, seal_secret('webhook_endpoints.secret', ?), ?)",
        (id, merchant_id, url, json.dumps(event_types), secret, now),
    )


def get_endpoint(tx: Tx, merchant_id: str, endpoint_id: str) -> Row | None:
    return tx.one(
        "SELECT * FROM webhook_endpoints WHERE id = ? AND merchant_id = ? AND deleted_at IS NULL",
        (endpoint_id, merchant_id),
    )


def count_endpoints(tx: Tx, merchant_id: str) -> int:
    """The merchant's endpoints that are not deleted (disabled ones count: delete them to make room)."""
    row = tx.one("SELECT COUNT(*) FROM webhook_endpoints WHERE merchant_id = ? AND deleted_at IS NULL", (merchant_id,))
    return int(row[0]) if row is not None else 0


def list_endpoints(tx: Tx, merchant_id: str) -> list[Row]:
    return tx.all(
        "SELECT * FROM webhook_endpoints WHERE merchant_id = ? AND deleted_at IS NULL ORDER BY created_at, id",
        (merchant_id,),
    )


def rotate_secret(tx: Tx, endpoint_id: str, *, new_secret: str, old_valid_until: int) -> None:
    tx.execute(
        "UPDATE webhook_endpoints SET old_secret = secret, old_secret_expires_at = ?,"
        " secret = seal_secret('webhook_endpoints.secret', ?) WHERE id = ?",
        (old_valid_until, new_secret, endpoint_id),
    )


def soft_delete_endpoint(tx: Tx, endpoint_id: str, *, now: int) -> None:
    tx.execute("UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?", (now, endpoint_id))
    tx.execute(
        "UPDATE deliveries SET status = 'disabled', last_error = 'endpoint deleted', updated_at = ?"
        " WHERE endpoint_id = ? AND status = 'pending'",
        (now, endpoint_id),
    )


def disable_endpoint(tx: Tx, endpoint_id: str, *, now: int, reason: str) -> None:
    """Stop delivering to an endpoint (it answered 410 Gone): it and its pending deliveries are disabled."""
    tx.execute(
        "UPDATE webhook_endpoints SET disabled_at = ?, disabled_reason = ? WHERE id = ? AND disabled_at IS NULL",
        (now, reason, endpoint_id),
    )
    tx.execute(
        "UPDATE deliveries SET status = 'disabled', last_error = ?, updated_at = ?"
        " WHERE endpoint_id = ? AND status = 'pending'",
        (f"endpoint disabled: {reason}", now, endpoint_id),
    )
