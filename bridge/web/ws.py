"""The device websocket `/v1/devices/connect` (docs/protocol.md): auth, reports, heartbeats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from bridge.core.protocol import (
    MAX_FRAME,
    ProtocolError,
    decode_auth,
    decode_frame,
    decode_heartbeat,
    decode_report,
    verify_auth,
)
from bridge.core.ratelimit import RateLimiter
from bridge.core.status import device_status
from bridge.errors import ApiError, DatabaseUnavailable
from bridge.ids import random_bytes
from bridge.services import devices as device_service
from bridge.services.ingest import ingest_report
from bridge.web.devices import client_address
from bridge.web.hub import Connection
from bridge.web.keys import CTX, HUB

__all__ = ["add_routes"]

log = structlog.get_logger("bridge.devices")
MAX_IN_FLIGHT = 64


async def _receive_text(ws: web.WebSocketResponse, timeout: float | None) -> str | None:
    """The next text frame; None when the peer closed; ProtocolError for anything else."""
    msg = await ws.receive(timeout=timeout)
    if msg.type == WSMsgType.TEXT:
        return str(msg.data)
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
        return None
    if msg.type == WSMsgType.BINARY:
        raise ProtocolError("bad_frame", "binary frames are not part of the protocol")
    # WSMsgType.ERROR: aiohttp already closed the socket (1009 too large, 1007 bad UTF-8, …).
    return None


async def connect(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    hub = request.app[HUB]
    s = ctx.settings
    # No permessage-deflate: frames are small and compressing every ack cost a quarter of the CPU.
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, heartbeat=s.ws_ping_interval, autoping=True, compress=False)
    await ws.prepare(request)
    nonce = base64.b64encode(random_bytes(32)).decode("ascii")
    anon = Connection("", "", ws, ctx.clock.now_ms(), ctx.clock.now_ms())
    await anon.send({"type": "challenge", "v": 1, "nonce": nonce, "server_time": ctx.clock.now_ms()})
    # Authentication: the nonce is consumed by the first frame, whatever it holds.
    try:
        text = await _receive_text(ws, s.auth_timeout)
        if text is None:
            return ws
        auth = decode_auth(decode_frame(text))
        device = await device_service.find(ctx, auth.device_id)
        if device is None:
            raise ProtocolError("auth_failed", "unknown device")
        verify_auth(auth, expected_nonce=nonce, public_key=device.public_key, now_ms=ctx.clock.now_ms())
        if device.revoked:
            raise ProtocolError("device_revoked", "this device was revoked; pair it again")
    except TimeoutError:
        await anon.close("auth_timeout", "authenticate within 10 seconds")
        return ws
    except ProtocolError as e:
        log.info("device.auth_failed", code=e.code, reason=e.message, remote=client_address(request))
        await anon.close(e.code, e.message)
        return ws
    now = ctx.clock.now_ms()
    conn = Connection(auth.device_id, device.merchant_id, ws, now, now, channels=frozenset(device.channels))
    await hub.register(conn)
    log.info("device.connected", device_id=conn.device_id, agent_version=auth.agent_version)
    try:
        await conn.send(
            {
                "type": "auth_ok",
                "device_id": conn.device_id,
                "heartbeat_interval": s.heartbeat_interval,
                "server_time": now,
                "last_seq": device.last_seq,
            }
        )
        if not await device_service.connect(ctx, conn.device_id, conn.id):  # revoked in the meantime
            await conn.close("device_revoked", "this device was revoked; pair it again")
            return ws
        hub.held(conn)
        await _serve(request, conn)
    finally:
        if hub.unregister(conn):
            with contextlib.suppress(ApiError, DatabaseUnavailable, asyncio.CancelledError):
                await asyncio.shield(device_service.disconnect(ctx, conn.device_id, conn.id, ["disconnected"]))
        log.info("device.disconnected", device_id=conn.device_id, close_code=ws.close_code)
    return ws


async def _serve(request: web.Request, conn: Connection) -> None:
    ctx = request.app[CTX]
    limiter = RateLimiter(
        rate=ctx.settings.device_max_frames_per_second, per=1.0, burst=ctx.settings.device_max_frames_per_second
    )
    in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    try:
        while not conn.closing:
            try:
                text = await _receive_text(conn.ws, None)
                if text is None:
                    return
                if not limiter.allow("frames", time.monotonic()):
                    raise ProtocolError("rate_limited", "too many frames; slow down")
                obj = decode_frame(text)
                kind = obj["type"]
                if kind == "report":
                    await in_flight.acquire()
                    task = asyncio.create_task(_report(request, conn, obj, in_flight), name="device-report")
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                elif kind == "heartbeat":
                    await _heartbeat(request, conn, obj)
                elif kind == "auth":
                    raise ProtocolError("bad_frame", "already authenticated")
                else:
                    raise ProtocolError("unknown_type", f"unknown message type {kind[:32]!r}")
            except ProtocolError as e:
                log.info("device.protocol_error", device_id=conn.device_id, code=e.code)
                await conn.close(e.code, e.message)
                return
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _report(request: web.Request, conn: Connection, obj: dict[str, Any], sem: asyncio.Semaphore) -> None:
    ctx = request.app[CTX]
    started = time.perf_counter()
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    seq = obj.get("seq") if isinstance(obj.get("seq"), int) else None
    try:
        try:
            report = decode_report(obj)
        except ValueError as e:
            ctx.metrics.reports.labels("rejected").inc()
            await conn.send(
                {
                    "type": "ack",
                    "event_id": event_id,
                    "seq": seq,
                    "status": "rejected",
                    "reason": f"invalid_report: {e}",
                }
            )
            return
        try:
            outcome = await ingest_report(
                ctx,
                device_id=conn.device_id,
                merchant_id=conn.merchant_id,
                report=report,
                device_channels=conn.channels,
            )
        except Exception as e:  # not committed: no ack, the device resends
            log.warning("report.failed", device_id=conn.device_id, error=type(e).__name__)
            ctx.metrics.reports.labels("failed").inc()
            return
        ctx.metrics.reports.labels(outcome.status).inc()
        ctx.metrics.ingest_seconds.observe(time.perf_counter() - started)
        log.info(
            "report." + outcome.status,
            device_id=conn.device_id,
            payment_id=outcome.payment_id,
            order_id=outcome.order_id,
            reason=outcome.reason,
        )
        ack: dict[str, object] = {
            "type": "ack",
            "event_id": event_id,  # as the device spelled it: its outbox looks it up by that
            "seq": report.seq,
            "status": outcome.status,
            "payment_id": outcome.payment_id,
        }
        await conn.send(ack)
    except ConnectionResetError:
        pass
    finally:
        sem.release()


async def _heartbeat(request: web.Request, conn: Connection, obj: dict[str, Any]) -> None:
    ctx = request.app[CTX]
    hb = decode_heartbeat(obj)
    now = ctx.clock.now_ms()
    conn.last_heartbeat_at = now
    status, reasons = device_status(
        connected=True,
        last_heartbeat_at=now,
        listener_ok=hb.listener_ok,
        battery_level=hb.battery_level,
        charging=hb.charging,
        outbox_depth=hb.outbox_depth,
        now=now,
        rules=ctx.health_rules,
    )
    await device_service.set_status(ctx, conn.device_id, status, reasons, heartbeat=hb.body, connection_id=conn.id)
    await conn.send({"type": "heartbeat_ack", "server_time": now})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/devices/connect", connect)
