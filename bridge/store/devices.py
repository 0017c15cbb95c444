"""Relay devices: identity, links to receiving accounts, live status."""

from __future__ import annotations

import json

from bridge.store.database import Row, Tx

__all__ = [
    "device_account_ids",
    "get_device",
    "insert_device",
    "link_account",
    "list_devices",
    "merchant_has_online_device",
    "online_account_ids",
    "record_report",
    "revoke_device",
    "status_counts",
    "update_status",
]


def insert_device(
    tx: Tx, *, id: str, merchant_id: str, name: str, public_key: str, channels: list[str], now: int
) -> None:
    tx.execute(
        "INSERT INTO devices (id, merchant_id, name, public_key, channels, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (id, merchant_id, name, public_key, json.dumps(channels), now),
    )


def get_device(tx: Tx, device_id: str) -> Row | None:
    return tx.one("SELECT * FROM devices WHERE id = ?", (device_id,))


def list_devices(tx: Tx, merchant_id: str | None) -> list[Row]:
    if merchant_id is None:
        return tx.all("SELECT * FROM devices ORDER BY created_at, id")
    return tx.all("SELECT * FROM devices WHERE merchant_id = ? ORDER BY created_at, id", (merchant_id,))


def revoke_device(tx: Tx, device_id: str, *, now: int) -> bool:
    n = tx.execute(
        "UPDATE devices SET revoked_at = ?, status = 'offline', status_reasons = '[\"revoked\"]'"
        " WHERE id = ? AND revoked_at IS NULL",
        (now, device_id),
    )
    return n == 1


def link_account(tx: Tx, device_id: str, account_id: str) -> None:
    tx.execute(
        "INSERT INTO device_accounts (device_id, account_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (device_id, account_id),
    )


def device_account_ids(tx: Tx, device_id: str) -> list[str]:
    rows = tx.all("SELECT account_id FROM device_accounts WHERE device_id = ? ORDER BY account_id", (device_id,))
    return [str(r[0]) for r in rows]


def online_account_ids(tx: Tx, merchant_id: str) -> set[str]:
    rows = tx.all(
        "SELECT DISTINCT da.account_id FROM device_accounts da JOIN devices d ON d.id = da.device_id"
        " WHERE d.merchant_id = ? AND d.status != 'offline' AND d.revoked_at IS NULL",
        (merchant_id,),
    )
    return {str(r[0]) for r in rows}


def merchant_has_online_device(tx: Tx, merchant_id: str) -> bool:
    row = tx.one(
        "SELECT 1 FROM devices WHERE merchant_id = ? AND status != 'offline' AND revoked_at IS NULL LIMIT 1",
        (merchant_id,),
    )
    return row is not None


def update_status(
    tx: Tx,
    device_id: str,
    *,
    status: str,
    reasons: list[str],
    last_seen: int | None = None,
    connected_since: int | None = None,
    clear_connected: bool = False,
    heartbeat: str | None = None,
    heartbeat_at: int | None = None,
) -> None:
    sets = ["status = ?", "status_reasons = ?"]
    params: list[object] = [status, json.dumps(reasons)]
    if last_seen is not None:
        sets.append("last_seen = ?")
        params.append(last_seen)
    if connected_since is not None:
        sets.append("connected_since = ?")
        params.append(connected_since)
    if clear_connected:
        sets.append("connected_since = NULL")
    if heartbeat is not None:
        sets.append("last_heartbeat = ?")
        params.append(heartbeat)
    if heartbeat_at is not None:
        sets.append("last_heartbeat_at = ?")
        params.append(heartbeat_at)
    params.append(device_id)
    tx.execute(f"UPDATE devices SET {', '.join(sets)} WHERE id = ?", params)


def record_report(tx: Tx, device_id: str, *, now: int, day: str, seq: int) -> None:
    tx.execute(
        "UPDATE devices SET last_report_at = ?, last_seen = ?,"
        " reports_today = CASE WHEN reports_day = ? THEN reports_today + 1 ELSE 1 END,"
        " reports_day = ?, last_seq = CASE WHEN last_seq > ? THEN last_seq ELSE ? END WHERE id = ?",
        (now, now, day, day, seq, seq, device_id),
    )


def status_counts(tx: Tx) -> dict[str, int]:
    """Devices not revoked, by status."""
    rows = tx.all("SELECT status, COUNT(*) FROM devices WHERE revoked_at IS NULL GROUP BY status")
    return {str(r[0]): int(r[1]) for r in rows}
