"""Pairing relay phones, listing and revoking them, and their status changes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from bridge.core.protocol import decode_public_key
from bridge.core.states import DeviceStatus
from bridge.core.tokens import hash_secret, normalise_pairing_code, pairing_code_from_bytes
from bridge.errors import BadRequest, NotFound
from bridge.ids import new_id, random_bytes
from bridge.services.context import Context
from bridge.services.events import emit
from bridge.services.views import device_json, utc_day
from bridge.store import devices as store
from bridge.store import merchants as merchants_store
from bridge.store.database import Tx

__all__ = [
    "PAIRING_TTL_MS",
    "create_pairing_code",
    "get_device",
    "list_devices",
    "pair_device",
    "pair_url",
    "pairing_outcome",
    "revoke_device",
    "set_status",
]

PAIRING_TTL_MS = 10 * 60 * 1000


async def create_pairing_code(ctx: Context, merchant_id: str) -> tuple[str, int]:
    code = pairing_code_from_bytes(random_bytes(8))

    def op(tx: Tx) -> int:
        now = ctx.clock.now_ms()
        merchants_store.insert_pairing_code(
            tx, code_hash=hash_secret(code), merchant_id=merchant_id, now=now, expires_at=now + PAIRING_TTL_MS
        )
        return now + PAIRING_TTL_MS

    return code, await ctx.db.write(op)


def pair_url(server: str, code: str) -> str:
    """What the pairing QR code holds: the agent pairs with `server` using `code`."""
    return f"paybridge://pair?server={quote(server, safe='')}&code={code}"


async def pairing_outcome(ctx: Context, merchant_id: str, code: str) -> dict[str, Any] | None:
    """The device this merchant's pairing code paired, or None while it is unused."""

    def op(tx: Tx) -> dict[str, Any] | None:
        row = merchants_store.get_pairing_code(tx, hash_secret(code))
        if row is None or row["merchant_id"] != merchant_id or row["device_id"] is None:
            return None
        device = store.get_device(tx, row["device_id"])
        return None if device is None else device_json(device)

    return await ctx.db.read(op)


async def pair_device(ctx: Context, *, code: str, public_key: str, name: str, channels: list[str]) -> dict[str, Any]:
    try:
        decode_public_key(public_key)
    except ValueError as e:
        raise BadRequest(str(e), "invalid_public_key") from None
    try:
        normalised = normalise_pairing_code(code)
    except ValueError:
        normalised = ""
    device_id = new_id("dev")

    def op(tx: Tx) -> dict[str, Any]:
        now = ctx.clock.now_ms()
        merchant_id = (
            merchants_store.consume_pairing_code(tx, code_hash=hash_secret(normalised), now=now, device_id=device_id)
            if normalised
            else None
        )
        if merchant_id is None:
            raise NotFound("this pairing code is wrong, used or expired; ask for a new one", "invalid_pairing_code")
        store.insert_device(
            tx, id=device_id, merchant_id=merchant_id, name=name, public_key=public_key, channels=channels, now=now
        )
        found = merchant_id
        tx.after_commit.append(lambda: ctx.bus.announce(found, []))  # wakes the dashboard's pairing page
        return {
            "device_id": device_id,
            "merchant_id": merchant_id,
            "heartbeat_interval": ctx.settings.heartbeat_interval,
        }

    return await ctx.db.write(op)


async def list_devices(ctx: Context, merchant_id: str | None) -> list[dict[str, Any]]:
    def op(tx: Tx) -> list[dict[str, Any]]:
        out = []
        for row in store.list_devices(tx, merchant_id):
            d = device_json(row, utc_day(ctx.clock.now_ms()))
            d["account_ids"] = store.device_account_ids(tx, row["id"])
            out.append(d)
        return out

    return await ctx.db.read(op)


async def get_device(ctx: Context, merchant_id: str | None, device_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_device(tx, device_id)
        if row is None or (merchant_id is not None and row["merchant_id"] != merchant_id):
            raise NotFound("no such device")
        d = device_json(row, utc_day(ctx.clock.now_ms()))
        d["account_ids"] = store.device_account_ids(tx, device_id)
        return d

    return await ctx.db.read(op)


async def revoke_device(ctx: Context, merchant_id: str | None, device_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_device(tx, device_id)
        if row is None or (merchant_id is not None and row["merchant_id"] != merchant_id):
            raise NotFound("no such device")
        was = row["status"]
        store.revoke_device(tx, device_id, now=ctx.clock.now_ms())
        row = store.get_device(tx, device_id)
        assert row is not None
        if was != DeviceStatus.OFFLINE:
            emit(
                tx,
                ctx.bus,
                merchant_id=row["merchant_id"],
                type="device.offline",
                data={"device": device_json(row)},
                now=ctx.clock.now_ms(),
            )
        return device_json(row)

    return await ctx.db.write(op)


async def set_status(
    ctx: Context,
    device_id: str,
    status: DeviceStatus,
    reasons: list[str],
    *,
    connected_since: int | None = None,
    clear_connected: bool = False,
    heartbeat: dict[str, Any] | None = None,
) -> None:
    """Store a device's status (and latest heartbeat); raise `device.*` when the status changes."""

    def op(tx: Tx) -> None:
        now = ctx.clock.now_ms()
        row = store.get_device(tx, device_id)
        if row is None:
            return
        store.update_status(
            tx,
            device_id,
            status=status,
            reasons=reasons,
            last_seen=now,
            connected_since=connected_since,
            clear_connected=clear_connected,
            heartbeat=None if heartbeat is None else json.dumps(heartbeat, ensure_ascii=False),
            heartbeat_at=None if heartbeat is None else now,
        )
        if row["status"] != status and row["revoked_at"] is None:
            fresh = store.get_device(tx, device_id)
            assert fresh is not None
            emit(
                tx,
                ctx.bus,
                merchant_id=row["merchant_id"],
                type=f"device.{status.value}",
                data={"device": device_json(fresh)},
                now=now,
            )

    await ctx.db.write(op)
