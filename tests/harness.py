"""Real parts for tests: a bridge on an ephemeral loopback port, an HTTP API client, a device.

Nothing here fakes our own system: the bridge is the real aiohttp app on a real socket, the
device speaks the real protocol over a real websocket with a real Ed25519 key.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import websockets
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge.config import Settings
from bridge.services.context import Context
from bridge.web.app import create_app, make_runner
from bridge.web.keys import CTX
from tests import pg

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test bridge; on PostgreSQL when PAYBRIDGE_TEST_DATABASE_URL says so (tests/pg.py)."""
    base = Settings(
        database_url=pg.database_for(data_dir) if pg.e2e_on_postgres() else "",
        data_dir=data_dir,
        host="127.0.0.1",
        port=0,
        admin_token=ADMIN_TOKEN,
        allow_private_webhooks=True,
        webhook_schedule="0,0,0",
        log_format="json",
        log_level="warning",
    )
    return replace(base, **overrides)


@dataclass
class RunningBridge:
    app: web.Application
    runner: web.AppRunner
    base_url: str
    session: aiohttp.ClientSession

    @property
    def ctx(self) -> Context:
        return self.app[CTX]

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/v1/devices/connect"

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base_url + path, json=json_body, data=data, headers=h) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text) if text else None
            except ValueError:
                return r.status, text

    async def merchant(self, name: str = "shop") -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/merchants", token=ADMIN_TOKEN, json_body={"name": name})
        assert status == 201, body
        return dict(body)

    async def order(self, key: str, amount: str, channel: str = "alipay", **extra: Any) -> dict[str, Any]:
        body = {
            "merchant_order_id": extra.pop("merchant_order_id", str(uuid.uuid4())),
            "amount": amount,
            "channel": channel,
            **extra,
        }
        status, out = await self.call("POST", "/v1/orders", token=key, json_body=body)
        assert status in (200, 201), out
        return dict(out)

    async def pair(self, key: str, name: str = "phone", channels: list[str] | None = None) -> TestDevice:
        status, code = await self.call("POST", "/v1/pairing-codes", token=key)
        assert status == 201, code
        device = TestDevice(self.ws_url)
        status, out = await self.call(
            "POST",
            "/v1/devices/pair",
            json_body={
                "code": code["code"],
                "public_key": device.public_key_b64,
                "name": name,
                **({"channels": channels} if channels is not None else {}),
            },
        )
        assert status == 201, out
        device.device_id = out["device_id"]
        return device


@asynccontextmanager
async def running_bridge(settings: Settings, **kwargs: Any) -> AsyncIterator[RunningBridge]:
    app = create_app(settings, **kwargs)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    session = aiohttp.ClientSession()
    app[CTX].bound_url = f"http://127.0.0.1:{port}"
    try:
        yield RunningBridge(app, runner, f"http://127.0.0.1:{port}", session)
    finally:
        await session.close()
        await runner.cleanup()


@dataclass
class TestDevice:
    """A minimal protocol-speaking device for bridge tests (the real agent has its own tests)."""

    ws_url: str
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    device_id: str = ""
    ws: Any = None
    seq: int = 0

    __test__ = False

    @property
    def public_key_b64(self) -> str:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def auth_frame(
        self,
        nonce: str,
        *,
        timestamp: int | None = None,
        device_id: str | None = None,
        key: Ed25519PrivateKey | None = None,
    ) -> dict[str, Any]:
        ts = int(time.time() * 1000) if timestamp is None else timestamp
        did = device_id or self.device_id
        sig = (key or self.key).sign(f"paybridge-auth-v1\n{nonce}\n{did}\n{ts}".encode())
        return {
            "type": "auth",
            "device_id": did,
            "timestamp": ts,
            "nonce": nonce,
            "signature": base64.b64encode(sig).decode(),
            "agent_version": "test",
        }

    async def open(self) -> dict[str, Any]:
        """Connect and read the challenge."""
        self.ws = await websockets.connect(self.ws_url, max_size=2**20)
        return dict(json.loads(await self.ws.recv()))

    async def connect(self) -> dict[str, Any]:
        challenge = await self.open()
        await self.send(self.auth_frame(challenge["nonce"]))
        reply = await self.recv()
        assert reply["type"] == "auth_ok", reply
        return reply

    async def send(self, obj: Any) -> None:
        await self.ws.send(json.dumps(obj, ensure_ascii=False))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        return dict(json.loads(await asyncio.wait_for(self.ws.recv(), timeout)))

    async def recv_type(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout)
            if frame.get("type") == kind:
                return frame

    def report(
        self,
        *,
        amount_cents: int | None,
        channel: str = "alipay",
        title: str | None = None,
        text: str | None = None,
        package: str = "com.eg.android.AlipayGphone",
        key: str | None = None,
        when: int | None = None,
        event_id: str | None = None,
        kind: str = "payment",
        observed_at: int | None = None,
    ) -> dict[str, Any]:
        self.seq += 1
        now = int(time.time() * 1000)
        return {
            "type": "report",
            "event_id": event_id or str(uuid.uuid4()),
            "seq": self.seq,
            "observed_at": observed_at or now,
            "parsed": {"kind": kind, "channel": channel, "amount_cents": amount_cents, "reason": "test"},
            "notification": {
                "package": package,
                "title": title or "你已成功收款",
                "text": text or "",
                "when": when or now,
                "key": key or f"0|{package}|{uuid.uuid4()}",
            },
        }

    async def pay(self, amount_cents: int | None, **kw: Any) -> dict[str, Any]:
        """Send one report and return its ack."""
        frame = self.report(amount_cents=amount_cents, **kw)
        await self.send(frame)
        return await self.recv_type("ack")

    async def heartbeat(self, **overrides: Any) -> dict[str, Any]:
        hb = {
            "type": "heartbeat",
            "sent_at": int(time.time() * 1000),
            "agent_version": "test",
            "battery": {"level": 80, "charging": True},
            "listener": {"ok": True, "source": "test", "error": None},
            "outbox_depth": 0,
            "last_notification_at": {},
        }
        hb.update(overrides)
        await self.send(hb)
        return await self.recv_type("heartbeat_ack")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


@dataclass
class Receiver:
    """A real local webhook receiver that records every request."""

    status: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(({k.lower(): v for k, v in request.headers.items()}, body))
        self.arrived.set()
        return web.Response(status=self.status, text="ok")

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(b) for _, b in self.requests]
        return [e for e in out if type_ is None or e["type"] == type_]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"receiver did not see the expected requests; got {self.events()}")
            self.arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.2)


@asynccontextmanager
async def running_receiver(status: int = 200) -> AsyncIterator[Receiver]:
    rec = Receiver(status=status)
    async with running_handler(rec.handle) as base:
        rec.url = f"{base}/hook"
        yield rec


@asynccontextmanager
async def running_handler(handler: Any) -> AsyncIterator[str]:
    """A one-route HTTP server on loopback answering every POST with `handler`; yields its base URL."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    async with running_app(app) as base:
        yield base


@asynccontextmanager
async def running_app(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on an ephemeral loopback port; yields its base URL, cleans up after."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def eventually(fetch: Any, predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call `await fetch()` until `predicate(result)` holds (bounded); return the last result."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await fetch()
        if predicate(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s; last: {result!r}"[:2000])
        await asyncio.sleep(interval)


def serve_process(data_dir: Path, **settings: str) -> tuple[subprocess.Popen[str], str]:
    """`paybridge serve --port 0` as a real process (for SIGKILL tests), with the test admin token, the
    inline webhook sender and quiet logs, plus `settings` as PAYBRIDGE_<NAME> variables; none of the
    caller's own PAYBRIDGE_* variables leak in. Returns the process and its base URL once it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    env.update(PAYBRIDGE_ADMIN_TOKEN=ADMIN_TOKEN, PAYBRIDGE_WEBHOOK_SENDER="inline", PAYBRIDGE_LOG_LEVEL="warning")
    env.update({f"PAYBRIDGE_{name.upper()}": value for name, value in settings.items()})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError(f"paybridge serve exited with {proc.wait()} before listening")


async def sse_frames(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, str]]:
    """An SSE response as {"id", "event", "data"} frames (comments skipped)."""
    frame: dict[str, str] = {}
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            frame[name] = value


async def take_frames(frames: AsyncIterator[dict[str, str]], n: int) -> list[dict[str, str]]:
    """The next `n` frames (none for 0); wrap in `asyncio.wait_for` for a deadline."""
    out: list[dict[str, str]] = []
    if n == 0:
        return out
    async for f in frames:
        out.append(f)
        if len(out) == n:
            break
    return out
