"""Relay devices: identity, pairing codes, links to receiving accounts, live status."""

from __future__ import annotations

import json

from bridge.core import codec
from bridge.core.models.device import Device, PairingCode
from bridge.core.models.ids import DeviceId, InstanceId, MerchantId
from bridge.core.states import DeviceStatus
from bridge.store.database import Row, Tx

__all__ = [
    "beat_instance",
    "connect_device",
    "consume_pairing_code",
    "device_account_ids",
    "disconnect_device",
    "drop_dead_instances",
    "drop_instance",
    "drop_other_instances",
    "get_device",
    "get_pairing_code",
    "insert_device",
    "insert_pairing_code",
    "link_account",
    "list_devices",
    "merchant_has_online_device",
    "online_account_ids",
    "orphaned_offline",
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


def _device(r: Row) -> Device:
    return Device(
        id=DeviceId(str(r["id"])),
        merchant_id=MerchantId(str(r["merchant_id"])),
        name=str(r["name"]),
        public_key=str(r["public_key"]),
        channels=tuple(str(c) for c in codec.loads(r["channels"])),
        created_at=int(r["created_at"]),
        revoked_at=None if r["revoked_at"] is None else int(r["revoked_at"]),
        status=DeviceStatus(r["status"]),
        status_reasons=tuple(str(x) for x in codec.loads(r["status_reasons"])),
        connected_since=None if r["connected_since"] is None else int(r["connected_since"]),
        last_seen=None if r["last_seen"] is None else int(r["last_seen"]),
        last_heartbeat=None if r["last_heartbeat"] is None else str(r["last_heartbeat"]),
        last_heartbeat_at=None if r["last_heartbeat_at"] is None else int(r["last_heartbeat_at"]),
        last_report_at=None if r["last_report_at"] is None else int(r["last_report_at"]),
        reports_day=None if r["reports_day"] is None else str(r["reports_day"]),
        reports_today=int(r["reports_today"]),
        last_seq=int(r["last_seq"]),
        held_by=None if r["held_by"] is None else InstanceId(str(r["held_by"])),
        connection_id=None if r["connection_id"] is None else str(r["connection_id"]),
    )


def get_device(tx: Tx, device_id: str) -> Device | None:
    row = tx.one("SELECT * FROM devices WHERE id = ?", (device_id,))
    return None if row is None else _device(row)


def list_devices(tx: Tx, merchant_id: str | None) -> list[Device]:
    if merchant_id is None:
        rows = tx.all("SELECT * FROM devices ORDER BY created_at, id")
    else:
        rows = tx.all("SELECT * FROM devices WHERE merchant_id = ? ORDER BY created_at, id", (merchant_id,))
    return [_device(r) for r in rows]


def insert_pairing_code(tx: Tx, *, code_hash: str, merchant_id: str, now: int, expires_at: int) -> None:
    tx.execute(
        "INSERT INTO pairing_codes (code_hash, merchant_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (code_hash, merchant_id, now, expires_at),
    )


def get_pairing_code(tx: Tx, code_hash: str) -> PairingCode | None:
    r = tx.one(
        "SELECT code_hash, merchant_id, created_at, expires_at, used_at, device_id FROM pairing_codes"
        " WHERE code_hash = ?",
        (code_hash,),
    )
    if r is None:
        return None
    return PairingCode(
        code_hash=str(r["code_hash"]),
        merchant_id=MerchantId(str(r["merchant_id"])),
        created_at=int(r["created_at"]),
        expires_at=int(r["expires_at"]),
        used_at=None if r["used_at"] is None else int(r["used_at"]),
        device_id=None if r["device_id"] is None else DeviceId(str(r["device_id"])),
    )


def consume_pairing_code(tx: Tx, *, code_hash: str, now: int, device_id: str) -> MerchantId | None:
    """Use a live code for `device_id`: its merchant, or None if unknown, used or expired. One
    conditional UPDATE: of two instances redeeming one code at once, the second finds it used."""
    row = tx.one(
        "UPDATE pairing_codes SET used_at = ?, device_id = ? WHERE code_hash = ? AND used_at IS NULL"
        " AND expires_at > ? RETURNING merchant_id",
        (now, device_id, code_hash, now),
    )
    return None if row is None else MerchantId(str(row[0]))


def revoke_device(tx: Tx, device_id: str, *, now: int) -> bool:
    n = tx.execute(
        "UPDATE devices SET revoked_at = ?, status = 'offline', status_reasons = '[\"revoked\"]',"
        " held_by = NULL, connection_id = NULL WHERE id = ? AND revoked_at IS NULL",
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
    connection_id: str | None = None,
    instance: str | None = None,
) -> bool:
    """Store a status; with `connection_id` (and the `instance` holding it), only while that connection
    is the device's current one, or if nobody holds the device (a sweep took it from an instance
    thought dead that is still alive: its live connection takes it back); False if not stored."""
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
    where = "id = ?"
    guard: list[object] = []
    if connection_id is not None:
        assert instance is not None, "a connection's status names its instance"
        sets += ["held_by = ?", "connection_id = ?"]
        params += [instance, connection_id]
        where += " AND (connection_id = ? OR (connection_id IS NULL AND revoked_at IS NULL))"
        guard.append(connection_id)
    params.append(device_id)
    params += guard
    return tx.execute(f"UPDATE devices SET {', '.join(sets)} WHERE {where}", params) == 1


def connect_device(tx: Tx, device_id: str, *, instance: str, connection_id: str, now: int) -> bool:
    """The device's socket is now `connection_id` on `instance` (the newer connection wins): online.
    False if the device is revoked."""
    return (
        tx.execute(
            "UPDATE devices SET status = ?, status_reasons = '[]', last_seen = ?, connected_since = ?,"
            " held_by = ?, connection_id = ? WHERE id = ? AND revoked_at IS NULL",
            (DeviceStatus.ONLINE.value, now, now, instance, connection_id, device_id),
        )
        == 1
    )


def disconnect_device(tx: Tx, device_id: str, *, connection_id: str, reasons: list[str], now: int) -> bool:
    """Offline, if `connection_id` is still the device's connection (a socket another one replaced,
    here or on another instance, changes nothing when it closes late)."""
    return (
        tx.execute(
            "UPDATE devices SET status = ?, status_reasons = ?, last_seen = ?, connected_since = NULL,"
            " held_by = NULL, connection_id = NULL WHERE id = ? AND connection_id = ?",
            (DeviceStatus.OFFLINE.value, json.dumps(reasons), now, device_id, connection_id),
        )
        == 1
    )


# -- instances: who holds device sockets --------------------------------------------------------
# Several instances may share one database; each renews its row while it runs. A device held by an
# instance whose row ran out (or is gone) has nobody to talk to: `orphaned_offline` marks it.
# On PostgreSQL the sweep locks its rows with SKIP LOCKED (rows another sweep or a reconnecting
# device holds are left to the next sweep), and the conditional UPDATE takes each device once.
_SKIP_LOCKED = {"sqlite": "", "postgresql": " FOR UPDATE SKIP LOCKED"}


def beat_instance(tx: Tx, instance: str, *, now: int, alive_until: int) -> None:
    tx.execute(
        "INSERT INTO instances (id, started_at, alive_until) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until",
        (instance, now, alive_until),
    )


def drop_instance(tx: Tx, instance: str) -> None:
    tx.execute("DELETE FROM instances WHERE id = ?", (instance,))


def drop_dead_instances(tx: Tx, *, before: int) -> int:
    """Forget instances whose row ran out before `before` (their devices are swept whether or not
    the row is there: a device counts as held only by an instance with a live row)."""
    return tx.execute("DELETE FROM instances WHERE alive_until < ?", (before,))


def drop_other_instances(tx: Tx, instance: str) -> None:
    """Forget every other instance (a database only one process uses: anything else is a past run)."""
    tx.execute("DELETE FROM instances WHERE id != ?", (instance,))


def orphaned_offline(tx: Tx, *, now: int, limit: int = 500) -> list[str]:
    """Mark offline the devices that look connected but whose holder is gone; their ids."""
    connected = [s.value for s in DeviceStatus if s != DeviceStatus.OFFLINE]
    marks = ", ".join("?" for _ in connected)
    rows = tx.all(
        "UPDATE devices SET status = ?, status_reasons = '[\"instance_gone\"]', connected_since = NULL,"
        " held_by = NULL, connection_id = NULL WHERE id IN (SELECT d.id FROM devices d"
        f" WHERE d.status IN ({marks}) AND (d.held_by IS NULL OR NOT EXISTS (SELECT 1 FROM instances i"
        f" WHERE i.id = d.held_by AND i.alive_until >= ?)) LIMIT ?{_SKIP_LOCKED[tx.dialect]})"
        f" AND status IN ({marks}) RETURNING id",
        (DeviceStatus.OFFLINE.value, *connected, now, limit, *connected),
    )
    return [str(r[0]) for r in rows]


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
