"""The websocket client: authenticate, drain the outbox in seq order, heartbeat, reconnect.

One connection at a time. After `auth_ok` three loops run side by side until the connection
ends: the sender keeps up to `window` reports in flight (every unacknowledged row, from the
start of the outbox, after each reconnect), the receiver deletes acknowledged rows, the
heartbeat loop reports battery, listener health and outbox depth. Reports are resent verbatim
(same event id and seq), so the bridge's dedupe makes at-least-once delivery exactly-once in
effect. A report that stays unacknowledged for `ack_timeout` is sent again on the same
connection (the bridge answers nothing when it failed to commit).

Close codes 4401 and 4403 are final (`AuthRejected`); anything else is followed by a capped,
jittered exponential backoff that restarts from 1 s after every successful authentication.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from device_agent import __version__
from device_agent.core.backoff import BackoffPolicy
from device_agent.core.protocol import (
    CLOSE_REASONS,
    FINAL_CLOSE_CODES,
    MAX_FRAME,
    Ack,
    AckStatus,
    AuthOk,
    Challenge,
    HeartbeatAck,
    ProtocolViolation,
    ServerError,
    auth_frame,
    decode_server_frame,
    encode,
    heartbeat_frame,
)
from device_agent.errors import AuthRejected, ConfigError
from device_agent.identity import sign_auth
from device_agent.logs import log_event
from device_agent.outbox import Outbox

__all__ = ["ClientStatus", "ConnectionState", "DeviceClient", "HeartbeatExtras", "wait_event"]

log = logging.getLogger("device_agent.client")

AUTH_TIMEOUT = 10.0


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True if it was set.

    Uses `asyncio.timeout`, not `asyncio.wait_for`: on Python 3.11 `wait_for` can swallow a
    cancellation that races with the event being set, and a loop built on it never stops.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


class ConnectionState(StrEnum):
    IDLE = "idle"  # not started yet
    CONNECTING = "connecting"  # opening the websocket and authenticating
    CONNECTED = "connected"  # authenticated; reports flow
    BACKOFF = "backoff"  # disconnected, waiting before the next attempt
    STOPPED = "stopped"  # shut down on request
    REJECTED = "rejected"  # the bridge closed with 4401/4403; the agent gave up


@dataclass(frozen=True, slots=True)
class HeartbeatExtras:
    """What the agent adds to a heartbeat: battery (None = unknown), listener health, last seen."""

    battery: dict[str, Any] | None
    listener: dict[str, Any]
    last_notification_at: dict[str, int]


@dataclass(slots=True)
class ClientStatus:
    """The client's live state, read by the agent's status writer (mutable, owned by the client)."""

    state: ConnectionState = ConnectionState.IDLE
    connected_since: int | None = None
    last_ack_at: int | None = None
    last_error: str | None = None
    last_close_code: int | None = None
    reconnect_attempt: int = 0
    next_retry_at: int | None = None
    acked: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in AckStatus})


@dataclass(slots=True)
class _InFlight:
    seq: int
    body: str
    sent_at: float  # monotonic


class _Disconnected(Exception):
    """The connection ended in a way that a reconnect may fix; the message says how."""


class DeviceClient:
    """Keeps one authenticated connection to the bridge and drains the outbox through it."""

    def __init__(
        self,
        *,
        ws_url: str,
        device_id: str,
        key: Ed25519PrivateKey,
        outbox: Outbox,
        extras: Callable[[], Awaitable[HeartbeatExtras]],
        window: int = 8,
        heartbeat_interval: float | None = None,
        backoff: BackoffPolicy | None = None,
        rng: random.Random | None = None,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        agent_version: str = __version__,
        ack_timeout: float = 60.0,
        connect_timeout: float = 15.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self._url = ws_url
        self._device_id = device_id
        self._key = key
        self._outbox = outbox
        self._extras = extras
        self._window = window
        self._heartbeat_override = heartbeat_interval
        self._backoff = backoff or BackoffPolicy()
        self._rng = rng or random.Random()
        self._now_ms = now_ms
        self._version = agent_version
        self._ack_timeout = ack_timeout
        self._connect_timeout = connect_timeout
        self._on_change = on_change
        self._wake = asyncio.Event()
        self._in_flight: dict[str, _InFlight] = {}
        self._server_error: ServerError | None = None
        self._authenticated_this_session = False
        self.status = ClientStatus()

    def wake(self) -> None:
        """Tell the sender that the outbox has new rows."""
        self._wake.set()

    def _changed(self, **updates: Any) -> None:
        for name, value in updates.items():
            setattr(self.status, name, value)
        if self._on_change is not None:
            self._on_change()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect and serve until `stop` is set; raises AuthRejected on a final close code."""
        attempt = 0
        while not stop.is_set():
            self._changed(state=ConnectionState.CONNECTING, next_retry_at=None)
            try:
                await self._session(stop)
                if stop.is_set():
                    break
                reason = "the bridge closed the connection"
            except _Disconnected as e:
                reason = str(e)
            except AuthRejected as e:
                self._changed(state=ConnectionState.REJECTED, last_error=e.message, connected_since=None)
                log_event(log, "client.auth_rejected", level=logging.ERROR, close_code=e.close_code, reason=e.message)
                raise
            if self._authenticated_this_session:
                attempt = 0  # the bridge is back: start the schedule again from 1 s
            delay = self._backoff.delay(attempt, self._rng)
            attempt += 1
            log_event(log, "client.disconnected", level=logging.WARNING, reason=reason, retry_in=f"{delay:.2f}")
            self._changed(
                state=ConnectionState.BACKOFF,
                connected_since=None,
                last_error=reason,
                reconnect_attempt=attempt,
                next_retry_at=self._now_ms() + int(delay * 1000),
            )
            await wait_event(stop, delay)
        self._changed(state=ConnectionState.STOPPED, connected_since=None, next_retry_at=None)

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection: returns after a clean stop; raises _Disconnected or AuthRejected."""
        self._authenticated_this_session = False
        self._server_error = None
        try:
            async with connect(
                self._url,
                max_size=MAX_FRAME,
                open_timeout=self._connect_timeout,
                close_timeout=5,
                compression=None,
                ping_interval=20,
                ping_timeout=20,
                user_agent_header=f"paybridge-agent/{self._version}",
            ) as ws:
                auth_ok = await self._authenticate(ws)
                self._authenticated_this_session = True
                self._changed(
                    state=ConnectionState.CONNECTED,
                    connected_since=self._now_ms(),
                    reconnect_attempt=0,
                    last_error=None,
                    last_close_code=None,
                )
                log_event(log, "client.connected", device_id=self._device_id, last_seq=auth_ok.last_seq)
                await self._serve(ws, stop, auth_ok)
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd is not None else None
            detail = e.rcvd.reason if e.rcvd is not None else ""
            if self._server_error is not None and self._server_error.message:
                detail = self._server_error.message
            self._changed(last_close_code=code)
            if code in FINAL_CLOSE_CODES:
                raise AuthRejected(
                    f"{FINAL_CLOSE_CODES[code]} (close code {code}: {detail or CLOSE_REASONS.get(code, '')})",
                    close_code=code,
                ) from None
            name = CLOSE_REASONS.get(code or 0, "no close frame" if code is None else "unknown")
            raise _Disconnected(f"connection closed ({code} {name}{': ' + detail if detail else ''})") from None
        except InvalidURI as e:
            raise ConfigError(f"bad bridge URL {self._url}: {e}") from None
        except InvalidHandshake as e:
            raise _Disconnected(f"websocket handshake failed: {e}") from None
        except ProtocolViolation as e:
            raise _Disconnected(f"protocol violation by the bridge: {e}") from None
        except TimeoutError:
            raise _Disconnected("timed out connecting or authenticating") from None
        except OSError as e:
            raise _Disconnected(f"cannot connect: {e.strerror or e}") from None

    async def _recv_frame(self, ws: ClientConnection, timeout: float | None = None) -> Any:
        async with asyncio.timeout(timeout):
            raw = await ws.recv()
        frame = decode_server_frame(raw)
        if isinstance(frame, ServerError):
            self._server_error = frame
            log_event(log, "client.server_error", level=logging.WARNING, code=frame.code, message=frame.message)
        return frame

    async def _authenticate(self, ws: ClientConnection) -> AuthOk:
        frame = await self._recv_frame(ws, AUTH_TIMEOUT)
        if not isinstance(frame, Challenge):
            raise ProtocolViolation(f"expected a challenge, got {type(frame).__name__}")
        timestamp = self._now_ms()
        signature = sign_auth(self._key, nonce=frame.nonce, device_id=self._device_id, timestamp=timestamp)
        auth = auth_frame(
            device_id=self._device_id,
            timestamp=timestamp,
            nonce=frame.nonce,
            signature=signature,
            agent_version=self._version,
        )
        await ws.send(encode(auth))
        reply = await self._recv_frame(ws, AUTH_TIMEOUT)
        while isinstance(reply, ServerError):  # the close with its code follows
            reply = await self._recv_frame(ws, AUTH_TIMEOUT)
        if not isinstance(reply, AuthOk):
            raise ProtocolViolation(f"expected auth_ok, got {type(reply).__name__}")
        return reply

    async def _serve(self, ws: ClientConnection, stop: asyncio.Event, auth_ok: AuthOk) -> None:
        self._in_flight.clear()  # a new connection resends everything unacknowledged
        interval = self._heartbeat_override or float(auth_ok.heartbeat_interval)
        tasks = {
            asyncio.create_task(self._receiver(ws), name="client-receiver"),
            asyncio.create_task(self._sender(ws), name="client-sender"),
            asyncio.create_task(self._heartbeats(ws, interval), name="client-heartbeat"),
        }
        stopper = asyncio.create_task(stop.wait(), name="client-stop")
        try:
            done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (*tasks, stopper):
                t.cancel()
            await asyncio.gather(*tasks, stopper, return_exceptions=True)
        if stopper in done:
            await ws.close(1000, "agent stopping")
            return
        for t in done:
            exc = t.exception()
            if exc is not None:
                raise exc
        raise _Disconnected("a connection task ended unexpectedly")

    async def _receiver(self, ws: ClientConnection) -> None:
        while True:
            frame = await self._recv_frame(ws)
            if isinstance(frame, Ack):
                await self._handle_ack(frame)
            elif isinstance(frame, Challenge | AuthOk):
                raise ProtocolViolation(f"unexpected {type(frame).__name__} after authentication")
            elif isinstance(frame, HeartbeatAck):
                pass

    async def _handle_ack(self, ack: Ack) -> None:
        now = self._now_ms()
        entry = self._in_flight.pop(ack.event_id, None) if ack.event_id is not None else None
        if entry is None and ack.event_id is None and ack.seq is not None:
            for event_id, candidate in list(self._in_flight.items()):
                if candidate.seq == ack.seq:
                    entry = self._in_flight.pop(event_id)
                    ack = Ack(event_id, ack.seq, ack.status, ack.payment_id, ack.reason)
        removed = await self._outbox.ack(event_id=ack.event_id, seq=ack.seq, now_ms=now)
        self.status.acked[ack.status.value] += 1
        if ack.status is AckStatus.REJECTED:
            log_event(
                log, "report.rejected", level=logging.WARNING, seq=ack.seq, event_id=ack.event_id, reason=ack.reason
            )
        elif removed:
            log_event(log, "report.acked", seq=ack.seq, status=ack.status.value, payment_id=ack.payment_id)
        self._changed(last_ack_at=now)
        self._wake.set()

    async def _sender(self, ws: ClientConnection) -> None:
        cursor = 0
        while True:
            self._wake.clear()
            room = self._window - len(self._in_flight)
            if room > 0:
                items = await self._outbox.pending(after_seq=cursor, limit=room)
                for item in items:
                    await ws.send(item.body)
                    self._in_flight[item.event_id] = _InFlight(item.seq, item.body, time.monotonic())
                    cursor = item.seq
                if items:
                    continue
            wait = await self._resend_overdue(ws)
            await wait_event(self._wake, wait)

    async def _resend_overdue(self, ws: ClientConnection) -> float:
        """Resend reports unacknowledged for `ack_timeout`; return seconds until the next is due."""
        now = time.monotonic()
        next_due = self._ack_timeout
        for event_id, entry in sorted(self._in_flight.items(), key=lambda kv: kv[1].seq):
            due = entry.sent_at + self._ack_timeout - now
            if due <= 0:
                log_event(log, "report.resend", level=logging.WARNING, seq=entry.seq, event_id=event_id)
                await ws.send(entry.body)
                entry.sent_at = time.monotonic()
            else:
                next_due = min(next_due, due)
        return max(0.01, next_due)

    async def _heartbeats(self, ws: ClientConnection, interval: float) -> None:
        while True:
            try:
                extras = await self._extras()
            except Exception as e:  # a broken battery/health probe must not cost the connection
                log_event(log, "heartbeat.extras_failed", level=logging.WARNING, error=repr(e))
                extras = HeartbeatExtras(None, {"ok": False, "source": None, "error": "agent_error"}, {})
            frame = heartbeat_frame(
                sent_at=self._now_ms(),
                agent_version=self._version,
                battery=extras.battery,
                listener=extras.listener,
                outbox_depth=await self._outbox.depth(),
                last_notification_at=extras.last_notification_at,
            )
            await ws.send(encode(frame))
            await asyncio.sleep(interval)
