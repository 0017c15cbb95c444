"""Webhook endpoints: where integrators want events, and the secrets that sign them (stored sealed:
bridge.store.sealing; `Endpoint` records leave them out, `endpoint_keys` opens them for signing)."""

from __future__ import annotations

import json

from bridge.core.models.endpoint import Endpoint, EndpointKeys
from bridge.core.models.ids import EndpointId, MerchantId
from bridge.store.database import Row, Tx
from bridge.store.deliveries import disable_pending

__all__ = [
    "count_endpoints",
    "disable_endpoint",
    "endpoint_keys",
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


_FIELDS = "id, merchant_id, url, event_types, created_at, disabled_at, disabled_reason, deleted_at"


def _endpoint(row: Row) -> Endpoint:
    return Endpoint(
        id=EndpointId(str(row["id"])),
        merchant_id=MerchantId(str(row["merchant_id"])),
        url=str(row["url"]),
        event_types=tuple(str(t) for t in json.loads(row["event_types"])),
        created_at=int(row["created_at"]),
        disabled_at=None if row["disabled_at"] is None else int(row["disabled_at"]),
        disabled_reason=None if row["disabled_reason"] is None else str(row["disabled_reason"]),
        deleted_at=None if row["deleted_at"] is None else int(row["deleted_at"]),
    )


def get_endpoint(tx: Tx, merchant_id: str, endpoint_id: str) -> Endpoint | None:
    row = tx.one(
        f"SELECT {_FIELDS} FROM webhook_endpoints WHERE id = ? AND merchant_id = ? AND deleted_at IS NULL",
        (endpoint_id, merchant_id),
    )
    return None if row is None else _endpoint(row)


def endpoint_keys(tx: Tx, endpoint_id: str) -> EndpointKeys | None:
    """The endpoint's signing secrets, opened."""
    row = tx.one(
        "SELECT open_secret('webhook_endpoints.secret', secret), open_secret('webhook_endpoints.secret', old_secret),"
        " old_secret_expires_at FROM webhook_endpoints WHERE id = ?",
        (endpoint_id,),
    )
    if row is None:
        return None
    return EndpointKeys(str(row[0]), None if row[1] is None else str(row[1]), None if row[2] is None else int(row[2]))


def count_endpoints(tx: Tx, merchant_id: str) -> int:
    """The merchant's endpoints that are not deleted (disabled ones count: delete them to make room)."""
    row = tx.one("SELECT COUNT(*) FROM webhook_endpoints WHERE merchant_id = ? AND deleted_at IS NULL", (merchant_id,))
    return int(row[0]) if row is not None else 0


def list_endpoints(tx: Tx, merchant_id: str) -> list[Endpoint]:
    rows = tx.all(
        f"SELECT {_FIELDS} FROM webhook_endpoints WHERE merchant_id = ? AND deleted_at IS NULL ORDER BY created_at, id",
        (merchant_id,),
    )
    return [_endpoint(r) for r in rows]


def rotate_secret(tx: Tx, endpoint_id: str, *, new_secret: str, old_valid_until: int) -> None:
    tx.execute(
        "UPDATE webhook_endpoints SET old_secret = secret, old_secret_expires_at = ?,"
        " secret = seal_secret('webhook_endpoints.secret', ?) WHERE id = ?",
        (old_valid_until, new_secret, endpoint_id),
    )


def soft_delete_endpoint(tx: Tx, endpoint_id: str, *, now: int) -> None:
    """Delete an endpoint (kept for the delivery log); its pending deliveries are disabled."""
    tx.execute("UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?", (now, endpoint_id))
    disable_pending(tx, endpoint_id=endpoint_id, now=now, reason="endpoint deleted")


def disable_endpoint(tx: Tx, endpoint_id: str, *, now: int, reason: str) -> None:
    """Stop delivering to an endpoint (it answered 410 Gone): it and its pending deliveries are disabled."""
    tx.execute(
        "UPDATE webhook_endpoints SET disabled_at = ?, disabled_reason = ? WHERE id = ? AND disabled_at IS NULL",
        (now, reason, endpoint_id),
    )
    disable_pending(tx, endpoint_id=endpoint_id, now=now, reason=f"endpoint disabled: {reason}")
