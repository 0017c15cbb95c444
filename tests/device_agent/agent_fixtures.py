"""Shared pieces for the agent's client and run-loop tests.

Real parts only: pairing goes through the real HTTP endpoint of an in-process bridge
(`tests.harness`), and `ScriptedBridge` is a real websocket server on 127.0.0.1 whose
behaviour each test writes (to produce drops, withheld acks and close codes on demand).
`ListSource` is a test double of the `NotificationSource` I/O seam.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.server import ServerConnection, serve

from device_agent.config import StatePaths
from device_agent.core.notifications import Notification
from device_agent.identity import DeviceRecord, load_key
from device_agent.pairing import PairRequest, pair_device
from device_agent.sources.base import ListenerHealth, SourceExhausted
from tests.harness import RunningBridge

ALIPAY = "com.eg.android.AlipayGphone"


def alipay(i: int, yuan: str = "5.00") -> Notification:
    """The i-th distinct Alipay "received" notification for `yuan`."""
    return Notification(
        package=ALIPAY,
        title=f"你已成功收款{yuan}元",
        text="已转入余额",
        when=int(time.time() * 1000) + i,
        key=f"0|{ALIPAY}|{i}|null|10123",
    )


def other_app(i: int) -> Notification:
    return Notification(package="com.android.chrome", title="hello", text="5.00元", when=1000 + i, key=f"c{i}")


@dataclass
class Paired:
    state: StatePaths
    record: DeviceRecord
    key: Ed25519PrivateKey
    api_key: str


async def pair_with(bridge: RunningBridge, root: Path) -> Paired:
    """A merchant and a device paired through the bridge's real pairing endpoint."""
    merchant = await bridge.merchant()
    status, code = await bridge.call("POST", "/v1/pairing-codes", token=merchant["api_key"])
    assert status == 201, code
    state = StatePaths(root)
    record = await pair_device(
        PairRequest(server=bridge.base_url, code=code["code"], name="test phone"), state, now_ms=int(time.time() * 1000)
    )
    return Paired(state, record, load_key(state.key), merchant["api_key"])


@dataclass
class ListSource:
    """A NotificationSource fed by the test: `push` a batch; finite once `finish` is called."""

    name: str = "test"
    batches: asyncio.Queue[list[Notification] | None] = field(default_factory=asyncio.Queue)
    closed: bool = False
    ok: bool = True

    def push(self, *batch: Notification) -> None:
        self.batches.put_nowait(list(batch))

    def finish(self) -> None:
        self.batches.put_nowait(None)

    def health(self) -> ListenerHealth:
        return ListenerHealth(self.ok, self.name, None if self.ok else "broken")

    async def read(self) -> list[Notification]:
        batch = await self.batches.get()
        if batch is None:
            self.batches.put_nowait(None)
            raise SourceExhausted(self.name)
        return batch

    async def close(self) -> None:
        self.closed = True


Handler = Callable[["Session"], Awaitable[None]]


@dataclass
class Session:
    """One connection to the scripted bridge: helpers to authenticate and exchange frames."""

    ws: ServerConnection
    number: int
    received: list[dict[str, Any]] = field(default_factory=list)

    async def authenticate(self, *, last_seq: int = 0, heartbeat_interval: int = 3600) -> dict[str, Any]:
        nonce = base64.b64encode(b"n" * 32).decode()
        await self.send({"type": "challenge", "v": 1, "nonce": nonce, "server_time": int(time.time() * 1000)})
        auth = await self.recv()
        assert auth["type"] == "auth" and auth["nonce"] == nonce
        await self.send(
            {
                "type": "auth_ok",
                "device_id": auth["device_id"],
                "heartbeat_interval": heartbeat_interval,
                "server_time": int(time.time() * 1000),
                "last_seq": last_seq,
            }
        )
        return auth

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        frame = dict(json.loads(await asyncio.wait_for(self.ws.recv(), 30)))
        self.received.append(frame)
        return frame

    async def recv_report(self) -> dict[str, Any]:
        while True:
            frame = await self.recv()
            if frame["type"] == "report":
                return frame

    async def ack(self, report: dict[str, Any], status: str = "accepted") -> None:
        await self.send(
            {
                "type": "ack",
                "event_id": report["event_id"],
                "seq": report["seq"],
                "status": status,
                "payment_id": "pay_x",
            }
        )


@dataclass
class ScriptedBridge:
    url: str
    sessions: list[Session]
    close_codes: list[int | None]


@asynccontextmanager
async def scripted_bridge(handler: Handler) -> AsyncIterator[ScriptedBridge]:
    """A websocket server on 127.0.0.1 running `handler` for each connection."""
    sessions: list[Session] = []
    codes: list[int | None] = []

    async def on_connect(ws: ServerConnection) -> None:
        session = Session(ws, len(sessions) + 1)
        sessions.append(session)
        try:
            await handler(session)
        finally:
            await ws.wait_closed()
            codes.append(ws.close_code)

    async with serve(on_connect, "127.0.0.1", 0, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield ScriptedBridge(f"ws://127.0.0.1:{port}/v1/devices/connect", sessions, codes)
