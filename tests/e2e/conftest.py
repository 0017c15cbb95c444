"""End-to-end helpers: the real bridge and the real agent as subprocesses, a real webhook receiver.

Everything runs on 127.0.0.1. `BridgeProcess` starts `python -m bridge serve` on a free port with
its own data dir (and can be SIGKILLed and started again on the same port and data);
`AgentCli` runs `python -m device_agent ...` commands; `running_receiver` (from tests.harness)
is an aiohttp webhook receiver in the test process. Reusable by any e2e test:

    async def test_x(bridge_process: BridgeProcess, agent_cli: AgentCli) -> None:
        shop = await bridge_process.shop(webhook_url=receiver.url)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdefghij"
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    env.update(extra or {})
    return env


@dataclass
class Shop:
    """A merchant as the bridge created it, with its API key (and webhook secret if subscribed)."""

    merchant_id: str
    api_key: str
    webhook_secret: str | None = None


@dataclass
class BridgeProcess:
    """`python -m bridge serve` as a subprocess with a fixed port and data dir."""

    data_dir: Path
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None
    session: aiohttp.ClientSession | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start (or restart) the server and wait until it answers /healthz."""
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.starts += 1
        log = self.log_path.with_name(f"{self.log_path.stem}.{self.starts}.log").open("wb")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bridge",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                cwd=ROOT,
                env=_env(
                    {
                        "PAYBRIDGE_ADMIN_TOKEN": ADMIN_TOKEN,
                        "PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS": "1",
                        "PAYBRIDGE_WEBHOOK_SCHEDULE": "0,1,1",
                        "PAYBRIDGE_LOG_FORMAT": "json",
                    }
                ),
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            log.close()
        if self.session is None:
            self.session = aiohttp.ClientSession()
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while True:
            if self.proc.returncode is not None:
                raise AssertionError(f"the bridge exited with {self.proc.returncode}: {self.logs()[-2000:]}")
            try:
                async with self.session.get(self.base_url + "/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"the bridge did not come up: {self.logs()[-2000:]}")
            await asyncio.sleep(0.05)

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace") for p in sorted(self.log_path.parent.glob(f"{self.log_path.stem}.*.log"))
        )

    async def kill(self) -> None:
        """SIGKILL the server (no graceful shutdown) and reap it."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        """SIGTERM the server and wait for it to exit."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                await self.kill()

    async def close(self) -> None:
        await self.stop()
        if self.session is not None:
            await self.session.close()

    async def call(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> tuple[int, Any]:
        assert self.session is not None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(method, self.base_url + path, json=body, headers=headers) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def ok(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> Any:
        status, out = await self.call(method, path, token=token, body=body)
        assert status in (200, 201), (method, path, status, out)
        return out

    async def shop(self, name: str = "e2e shop", *, webhook_url: str | None = None) -> Shop:
        """A new merchant; with `webhook_url`, also a webhook endpoint for every event type."""
        m = await self.ok("POST", "/v1/merchants", token=ADMIN_TOKEN, body={"name": name})
        shop = Shop(merchant_id=m["id"], api_key=m["api_key"])
        if webhook_url is not None:
            endpoint = await self.ok("POST", "/v1/webhook-endpoints", token=shop.api_key, body={"url": webhook_url})
            shop.webhook_secret = endpoint["secret"]
        return shop

    async def pairing_link(self, shop: Shop) -> str:
        """A fresh pairing code's paybridge:// link, as the QR code shows it."""
        out = await self.ok("POST", "/v1/pairing-codes", token=shop.api_key)
        return str(out["pair_url"])

    async def order(self, shop: Shop, amount: str, channel: str = "alipay", **extra: Any) -> dict[str, Any]:
        body = {
            "merchant_order_id": extra.pop("merchant_order_id", f"o-{amount}-{channel}"),
            "amount": amount,
            "channel": channel,
            **extra,
        }
        return dict(await self.ok("POST", "/v1/orders", token=shop.api_key, body=body))

    async def payments(self, shop: Shop) -> list[dict[str, Any]]:
        """Every payment the bridge holds for the shop (all pages)."""
        out: list[dict[str, Any]] = []
        after = ""
        while True:
            page = await self.ok("GET", f"/v1/payments?limit=500{after}", token=shop.api_key)
            out.extend(page["data"])
            if not page["has_more"]:
                return out
            after = f"&starting_after={page['data'][-1]['id']}"


@dataclass
class AgentCli:
    """`python -m device_agent` with a state dir of its own."""

    state_dir: Path
    logs: list[str] = field(default_factory=list)
    started: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def run(self, *args: str, timeout: float = 90.0) -> tuple[int, str, str]:
        """Run a command to completion: (exit code, stdout, stderr)."""
        proc = await self.start(*args)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            raise AssertionError(f"agent {args} did not finish: {err.decode(errors='replace')[-3000:]}") from None
        assert proc.returncode is not None
        self.logs.append(err.decode(errors="replace"))
        return proc.returncode, out.decode(), err.decode()

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        """Start a command (e.g. a long `run`) and return the process (killed at teardown if still running)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device_agent",
            *args,
            "--state-dir",
            str(self.state_dir),
            cwd=ROOT,
            env=_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    async def reap(self) -> None:
        """SIGKILL and reap every process this helper started that is still running."""
        for proc in self.started:
            if proc.returncode is None:
                proc.kill()
                await proc.communicate()

    async def pair(self, link: str) -> str:
        """Pair with a paybridge:// link; return the device id."""
        code, _, err = await self.run("pair", link, "--name", "e2e phone")
        assert code == 0, err
        return str(json.loads((self.state_dir / "device.json").read_text())["device_id"])

    async def status(self) -> dict[str, Any]:
        code, out, err = await self.run("status", "--json")
        assert code == 0, err
        return dict(json.loads(out))


def write_replay(path: Path, items: list[dict[str, Any]]) -> Path:
    """A replay source file: one termux-notification-list item per line."""
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    return path


def alipay_item(i: int, yuan: str) -> dict[str, Any]:
    """The i-th distinct Alipay 'received' notification for `yuan` (as termux prints it)."""
    return {
        "id": 10_000 + i,
        "tag": None,
        "key": f"0|com.eg.android.AlipayGphone|{10_000 + i}|null|10123",
        "group": None,
        "packageName": "com.eg.android.AlipayGphone",
        "title": f"你已成功收款{yuan}元",
        "content": "已转入余额 100积分兑收钱音箱，去兑换>>",
        "when": 1_764_206_400_000 + i * 1000,
    }


@pytest.fixture
async def bridge_process(tmp_path: Path) -> AsyncIterator[BridgeProcess]:
    """A started `python -m bridge serve` on a free loopback port with a fresh data dir."""
    b = BridgeProcess(data_dir=tmp_path / "bridge-data", log_path=tmp_path / "bridge.log")
    await b.start()
    try:
        yield b
    finally:
        await b.close()


@pytest.fixture
async def agent_cli(tmp_path: Path) -> AsyncIterator[AgentCli]:
    """The agent CLI bound to a fresh state dir; agents a failed test left running are killed."""
    cli = AgentCli(state_dir=tmp_path / "agent-state")
    try:
        yield cli
    finally:
        await cli.reap()
