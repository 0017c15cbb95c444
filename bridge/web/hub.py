"""Live device connections of this process: who is connected, kicking, and the silence monitor.

Several instances may share one database; each holds the sockets of the devices connected to it.
The bus tells every hub when a device is revoked (close its socket here, if here) or connected to
another instance (close the stale one here): `DeviceHub.listen`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from bridge.core import codec
from bridge.core.protocol import CLOSE_CODES
from bridge.core.states import DeviceStatus
from bridge.ids import new_id
from bridge.services import devices as device_service
from bridge.services.bus import REVOKED, TAKEN, Message
from bridge.services.context import Context
from bridge.web.tasks import spawn

__all__ = ["Connection", "DeviceHub"]

log = structlog.get_logger("bridge.devices")


@dataclass(eq=False)
class Connection:
    device_id: str
    merchant_id: str
    ws: web.WebSocketResponse
    connected_at: int
    last_heartbeat_at: int
    channels: frozenset[str] = frozenset()  # what the device was paired for; empty: anything
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closing: bool = False
    id: str = field(default_factory=lambda: new_id("conn"))  # the device row's connection_id while current
    held: bool = False  # its connection is committed to the device row (DeviceHub.held)

    async def send(self, obj: dict[str, object]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                await self.ws.send_str(codec.dumps(obj))

    async def close(self, code: str, message: str) -> None:
        """Send an error frame (best effort) and close with the documented close code."""
        if self.closing:
            return
        self.closing = True
        # asyncio.timeout rather than wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self.send({"type": "error", "code": code, "message": message})
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5.0):
                await self.ws.close(code=CLOSE_CODES[code], message=code.encode())


class DeviceHub:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._conns: dict[str, Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def listen(self) -> None:
        """Act on what the bus says about devices (from this instance or another)."""
        bus = self.ctx.bus.broadcast
        bus.on(REVOKED, self._on_revoked)
        bus.on(TAKEN, self._on_taken)
        bus.on_gap(self._on_gap)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = spawn(coro, name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_revoked(self, msg: Message) -> None:
        if msg.key in self._conns:
            self._spawn(self.kick(msg.key, "device_revoked", "this device was revoked"), "device-revoke")

    def _on_taken(self, msg: Message) -> None:
        # The database decides which connection is newer (a message may arrive after this instance
        # took the device back); one not committed yet is left alone: its commit comes later and wins.
        conn = self._conns.get(msg.key)
        if conn is not None and conn.held and conn.id != msg.extra:
            self._spawn(self._recheck({conn.device_id: conn.id}), "device-taken")

    def _on_gap(self) -> None:
        held = {c.device_id: c.id for c in self._conns.values() if c.held}
        if held:
            self._spawn(self._recheck(held), "device-recheck")

    def held(self, conn: Connection) -> None:
        """`conn` is committed as its device's connection (from now on a take-over may close it)."""
        conn.held = True

    async def _recheck(self, held: dict[str, str]) -> None:
        """Close the sockets (device id -> connection id) whose device was revoked or taken over."""
        for device_id, why in (await device_service.recheck(self.ctx, held)).items():
            conn = self._conns.get(device_id)
            if conn is not None and conn.id == held[device_id]:
                log.info("device.taken_over" if why == "replaced" else "device.revoked_elsewhere", device_id=device_id)
                message = "this device was revoked" if why == "device_revoked" else "connected again elsewhere"
                await conn.close(why, message)

    def is_connected(self, device_id: str) -> bool:
        return device_id in self._conns

    def __len__(self) -> int:
        return len(self._conns)

    async def register(self, conn: Connection) -> None:
        old = self._conns.get(conn.device_id)
        self._conns[conn.device_id] = conn
        self.ctx.metrics.connected_devices.set(len(self._conns))
        if old is not None:
            await old.close("replaced", "this device connected again elsewhere")

    def unregister(self, conn: Connection) -> bool:
        """Forget a connection; True if it was the device's current one."""
        if self._conns.get(conn.device_id) is conn:
            del self._conns[conn.device_id]
            self.ctx.metrics.connected_devices.set(len(self._conns))
            return True
        return False

    async def kick(self, device_id: str, code: str, message: str) -> None:
        conn = self._conns.get(device_id)
        if conn is not None:
            await conn.close(code, message)

    async def close_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *(c.close("going_away", "the bridge is shutting down") for c in list(self._conns.values())),
            return_exceptions=True,
        )

    async def monitor(self, interval: float = 5.0) -> None:
        """Close connections that stopped heartbeating; they are marked offline on close."""
        timeout = self.ctx.settings.heartbeat_timeout * 1000
        while True:
            await asyncio.sleep(interval)
            now = self.ctx.clock.now_ms()
            for conn in list(self._conns.values()):
                if now - conn.last_heartbeat_at > timeout:
                    log.info("device.silent", device_id=conn.device_id)
                    try:  # one device failing to be marked must not stop the sweep for the others
                        await device_service.set_status(
                            self.ctx, conn.device_id, DeviceStatus.OFFLINE, ["no_heartbeat"], connection_id=conn.id
                        )
                    except Exception as e:
                        log.error("device.mark_offline_failed", device_id=conn.device_id, error=repr(e))
                    await conn.close("going_away", "no heartbeat for too long; reconnect")
