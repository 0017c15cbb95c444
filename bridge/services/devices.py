"""Pairing relay phones, listing and revoking them, and their status changes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from bridge.core.models.device import Device
from bridge.core.protocol import decode_public_key
from bridge.core.states import DeviceStatus
from bridge.core.tokens import hash_secret, normalise_pairing_code, pairing_code_from_bytes
from bridge.errors import BadRequest, NotFound
from bridge.ids import new_id, random_bytes
from bridge.services.bus import EVENTS, REVOKED, TAKEN, Message
from bridge.services.context import Context
from bridge.services.events import emit
from bridge.services.views import device_json, utc_day
from bridge.store import devices as store
from bridge.store.database import Tx

__all__ = [
    "PAIRING_TTL_MS",
    "beat",
    "connect",
    "create_pairing_code",
    "disconnect",
    "find",
    "get_device",
    "leave",
    "list_devices",
    "pair_device",
    "pair_url",
    "pairing_outcome",
    "recheck",
    "revoke_device",
    "set_status",
    "sweep_orphans",
]

PAIRING_TTL_MS = 10 * 60 * 1000
DEAD_INSTANCE_KEEP_MS = 3_600_000


async def create_pairing_code(ctx: Context, merchant_id: str) -> tuple[str, int]:
    code = pairing_code_from_bytes(random_bytes(8))

    def op(tx: Tx) -> int:
        now = ctx.clock.now_ms()
        store.insert_pairing_code(
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
        pairing = store.get_pairing_code(tx, hash_secret(code))
        if pairing is None or pairing.merchant_id != merchant_id or pairing.device_id is None:
            return None
        device = store.get_device(tx, pairing.device_id)
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
            store.consume_pairing_code(tx, code_hash=hash_secret(normalised), now=now, device_id=device_id)
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
        ctx.bus.broadcast.publish(tx, Message(EVENTS, found), local=False)  # ... on every instance
        return {
            "device_id": device_id,
            "merchant_id": merchant_id,
            "heartbeat_interval": ctx.settings.heartbeat_interval,
        }

    return await ctx.db.write(op)


async def find(ctx: Context, device_id: str) -> Device | None:
    """The device, whatever its merchant (the websocket's authentication looks it up by id)."""

    def op(tx: Tx) -> Device | None:
        return store.get_device(tx, device_id)

    return await ctx.db.read(op)


async def list_devices(ctx: Context, merchant_id: str | None) -> list[dict[str, Any]]:
    def op(tx: Tx) -> list[dict[str, Any]]:
        out = []
        for row in store.list_devices(tx, merchant_id):
            d = device_json(row, utc_day(ctx.clock.now_ms()))
            d["account_ids"] = store.device_account_ids(tx, row.id)
            d["connected"] = row.held_by is not None  # to this instance or another
            out.append(d)
        return out

    return await ctx.db.read(op)


async def get_device(ctx: Context, merchant_id: str | None, device_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_device(tx, device_id)
        if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
            raise NotFound("no such device")
        d = device_json(row, utc_day(ctx.clock.now_ms()))
        d["account_ids"] = store.device_account_ids(tx, device_id)
        d["connected"] = row.held_by is not None  # to this instance or another
        return d

    return await ctx.db.read(op)


async def revoke_device(ctx: Context, merchant_id: str | None, device_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_device(tx, device_id)
        if row is None or (merchant_id is not None and row.merchant_id != merchant_id):
            raise NotFound("no such device")
        was = row.status
        if store.revoke_device(tx, device_id, now=ctx.clock.now_ms()):
            # Whichever instance holds its socket closes it (this one too, after the commit).
            ctx.bus.broadcast.publish(tx, Message(REVOKED, device_id))
        row = store.get_device(tx, device_id)
        assert row is not None
        if was != DeviceStatus.OFFLINE:
            emit(
                tx,
                ctx.bus,
                merchant_id=row.merchant_id,
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
    connection_id: str | None = None,
) -> None:
    """Store a device's status (and latest heartbeat); raise `device.*` when the status changes.
    With `connection_id`, only while that connection is the device's current one."""

    def op(tx: Tx) -> None:
        now = ctx.clock.now_ms()
        row = store.get_device(tx, device_id)
        if row is None:
            return
        changed = store.update_status(
            tx,
            device_id,
            status=status,
            reasons=reasons,
            last_seen=now,
            connected_since=connected_since,
            clear_connected=clear_connected,
            heartbeat=None if heartbeat is None else json.dumps(heartbeat, ensure_ascii=False),
            heartbeat_at=None if heartbeat is None else now,
            connection_id=connection_id,
            instance=None if connection_id is None else ctx.bus.instance,
        )
        if changed and row.status != status:
            _status_event(ctx, tx, device_id, now)

    await ctx.db.write(op)


def _status_event(ctx: Context, tx: Tx, device_id: str, now: int) -> None:
    """Raise `device.<status>` for the device as it stands now in `tx` (nothing for a revoked one)."""
    fresh = store.get_device(tx, device_id)
    if fresh is None or fresh.revoked_at is not None:
        return
    emit(
        tx,
        ctx.bus,
        merchant_id=fresh.merchant_id,
        type=f"device.{fresh.status.value}",
        data={"device": device_json(fresh)},
        now=now,
    )


async def connect(ctx: Context, device_id: str, connection_id: str) -> bool:
    """The device's socket is now `connection_id` on this instance: online, held here; any other
    connection of it (on any instance) is closed (the newer connection wins). False if revoked."""

    def op(tx: Tx) -> bool:
        now = ctx.clock.now_ms()
        row = store.get_device(tx, device_id)
        if row is None or not store.connect_device(
            tx, device_id, instance=ctx.bus.instance, connection_id=connection_id, now=now
        ):
            return False
        # Other instances close their socket of it; this one's hub already replaced its own.
        ctx.bus.broadcast.publish(tx, Message(TAKEN, device_id, connection_id), local=False)
        if row.status != DeviceStatus.ONLINE:
            _status_event(ctx, tx, device_id, now)
        return True

    return await ctx.db.write(op)


async def disconnect(ctx: Context, device_id: str, connection_id: str, reasons: list[str]) -> None:
    """The socket `connection_id` closed: offline, unless the device has connected again since."""

    def op(tx: Tx) -> None:
        now = ctx.clock.now_ms()
        row = store.get_device(tx, device_id)
        if row is None or not store.disconnect_device(
            tx, device_id, connection_id=connection_id, reasons=reasons, now=now
        ):
            return
        if row.status != DeviceStatus.OFFLINE:
            _status_event(ctx, tx, device_id, now)

    await ctx.db.write(op)


async def recheck(ctx: Context, held: dict[str, str]) -> dict[str, str]:
    """For sockets held here (device id -> connection id): those that must close, with why
    ("device_revoked", or "replaced": the device connected again elsewhere). After a bus gap."""

    def op(tx: Tx) -> dict[str, str]:
        out: dict[str, str] = {}
        for device_id, connection_id in held.items():
            row = store.get_device(tx, device_id)
            if row is None or row.revoked_at is not None:
                out[device_id] = "device_revoked"
            elif row.connection_id is not None and row.connection_id != connection_id:
                out[device_id] = "replaced"
        return out

    return await ctx.db.read(op)


async def beat(ctx: Context, *, ttl_ms: int, sole: bool = False) -> None:
    """Renew this instance's row (alive for `ttl_ms` more). `sole`: nobody else uses this database
    (SQLite), so every other instance row is a past run of this one and is dropped."""

    def op(tx: Tx) -> None:
        now = ctx.clock.now_ms()
        if sole:
            store.drop_other_instances(tx, ctx.bus.instance)
        else:  # rows of instances that died (a clean stop deletes its own) are kept an hour, for a look
            store.drop_dead_instances(tx, before=now - DEAD_INSTANCE_KEEP_MS)
        store.beat_instance(tx, ctx.bus.instance, now=now, alive_until=now + ttl_ms)

    await ctx.db.write(op)


async def leave(ctx: Context) -> None:
    """This instance stops: its row goes (devices it still holds are swept by the next sweep)."""

    def op(tx: Tx) -> None:
        store.drop_instance(tx, ctx.bus.instance)

    await ctx.db.write(op)


async def sweep_orphans(ctx: Context) -> int:
    """Mark offline (raising `device.offline`) the devices whose holding instance is gone; how many."""

    def op(tx: Tx) -> int:
        now = ctx.clock.now_ms()
        ids = store.orphaned_offline(tx, now=now)
        for device_id in ids:
            _status_event(ctx, tx, device_id, now)
        return len(ids)

    return await ctx.db.write(op)
