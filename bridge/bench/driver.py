"""The load: end-to-end payments, idle devices and order creation against a BenchServer.

End-to-end (the default): every event has a pending order created through the HTTP API
beforehand; a simulated device reports the matching notification; the clock runs from the
moment the device's client takes the report to send it until the `order.paid` webhook for
that order has arrived at the bench's receiver and its signature has been verified.

With several instances (`paybridge serve` processes on one PostgreSQL schema), device k is paired
through and connected to instance k mod N, and the orders are created through them in turn; the
figures are for the whole cluster, and `per_instance` gives each instance's share (its devices'
events and latencies, its CPU and memory).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bridge.bench.devices import SimDevice, alipay_report, pair_devices
from bridge.bench.server import ADMIN_TOKEN, BenchServer
from bridge.core.signing import verify

__all__ = ["E2EConfig", "percentile", "run_e2e", "run_idle", "run_orders"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), int(-(-q * len(sorted_values) // 100))))
    return sorted_values[rank - 1]


def _ms_summary(prefix: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {f"{prefix}p{q}_ms": round(percentile(ordered, q) * 1000, 2) for q in (50, 95, 99)}


@dataclass
class Receiver:
    """The shop's webhook endpoint: verifies every signature, records verified `order.paid` events."""

    secret: str = ""
    arrived: dict[str, float] = field(default_factory=dict)  # order id -> perf_counter
    verified: int = 0
    bad_signatures: int = 0
    on_paid: Callable[[], None] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        h = request.headers
        try:
            ok = verify(
                self.secret,
                h["webhook-id"],
                int(h["webhook-timestamp"]),
                body,
                h["webhook-signature"],
                now=int(time.time()),
            )
        except (KeyError, ValueError):
            ok = False
        if not ok:
            self.bad_signatures += 1
            return web.Response(status=400, text="bad signature")
        self.verified += 1
        event = json.loads(body)
        if event.get("type") == "order.paid":
            order_id = event["data"]["order"]["id"]
            if order_id not in self.arrived:
                self.arrived[order_id] = time.perf_counter()
                if self.on_paid is not None:
                    self.on_paid()
        return web.Response(text="ok")

    async def start(self) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return runner, f"http://127.0.0.1:{port}/hook"


async def _post(session: aiohttp.ClientSession, url: str, token: str, body: Any) -> Any:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        out = await r.json()
        if r.status not in (200, 201):
            raise RuntimeError(f"POST {url}: {r.status} {out}")
        return out


async def _merchant(session: aiohttp.ClientSession, base: str) -> str:
    merchant = await _post(session, base + "/v1/merchants", ADMIN_TOKEN, {"name": "bench"})
    return str(merchant["api_key"])


async def _create_orders(
    session: aiohttp.ClientSession,
    base: str,
    key: str,
    count: int,
    clients: int,
    *,
    first_amount: int = 100,
    prefix: str = "bench",
) -> tuple[list[dict[str, Any]], list[float]]:
    """Create `count` orders with `clients` concurrent workers; (orders by index, latencies in s)."""
    orders: list[dict[str, Any]] = [{} for _ in range(count)]
    latencies: list[float] = []
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            body = {
                "merchant_order_id": f"{prefix}-{i}",
                "amount_cents": first_amount + i,  # distinct asked amounts: every order gets its own pay amount
                "channel": "alipay",
                "expires_in": 3600,
            }
            t = time.perf_counter()
            orders[i] = await _post(session, base + "/v1/orders", key, body)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(max(1, min(clients, count)))))
    return orders, latencies


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False))


@dataclass(frozen=True, slots=True)
class E2EConfig:
    devices: int = 20
    events: int = 250  # per device
    window: int = 4
    rate: float = 0.0  # offered events/s over all devices; 0 = as fast as acks allow


async def _connect_all(devices: list[SimDevice], stop: asyncio.Event, concurrency: int = 200) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(d: SimDevice) -> None:
        async with gate:
            d.start(stop)
            await asyncio.wait_for(d.connected.wait(), 60)

    await asyncio.gather(*(one(d) for d in devices))


async def run_e2e(servers: list[BenchServer], cfg: E2EConfig, log: Callable[[str], None]) -> dict[str, Any]:
    base = servers[0].base_url
    total = cfg.devices * cfg.events
    receiver = Receiver()
    all_paid = asyncio.Event()
    receiver.on_paid = lambda: all_paid.set() if len(receiver.arrived) >= total else None
    runner, hook_url = await receiver.start()
    stop = asyncio.Event()
    devices: list[SimDevice] = []
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    home = [servers[k % len(servers)] for k in range(cfg.devices)]  # the instance device k talks to
    async with _session() as session:
        try:
            key = await _merchant(session, base)
            endpoint = await _post(
                session, base + "/v1/webhook-endpoints", key, {"url": hook_url, "event_types": ["order.paid"]}
            )
            receiver.secret = endpoint["secret"]
            log(f"pairing {cfg.devices} devices")
            shares: list[list[tuple[str, Any]]] = []  # (device id, key) paired through each instance
            for n, server in enumerate(servers):
                mine = len(range(n, cfg.devices, len(servers)))
                shares.append(await pair_devices(session, server.base_url, key, mine) if mine else [])
            log(f"creating {total} pending orders")
            orders = await _orders_on(session, servers, key, total)

            def on_send(event_id: str, t: float) -> None:
                sent.setdefault(event_id, t)

            def on_ack(event_id: str, t: float) -> None:
                acked.setdefault(event_id, t)

            devices = []
            for k in range(cfg.devices):
                did, dkey = shares[k % len(servers)][k // len(servers)]
                devices.append(
                    SimDevice.create(home[k].base_url, did, dkey, window=cfg.window, on_send=on_send, on_ack=on_ack)
                )
            await _connect_all(devices, stop)
            order_of_event: dict[str, str] = {}
            instance_of_event: dict[str, int] = {}
            now_ms = int(time.time() * 1000)
            frames: list[list[dict[str, Any]]] = []
            for d_index in range(cfg.devices):
                frames.append([])
                for e_index in range(cfg.events):
                    order = orders[d_index * cfg.events + e_index]
                    frame = alipay_report(e_index + 1, int(order["pay_amount_cents"]), now_ms)
                    order_of_event[frame["event_id"]] = order["id"]
                    instance_of_event[frame["event_id"]] = d_index % len(servers)
                    frames[-1].append(frame)
            log(f"sending {total} reports" + (f" to {len(servers)} instances" if len(servers) > 1 else ""))
            servers[0].profile_start()
            before = [server.sample() for server in servers]
            load_cpu0 = time.process_time()
            t0 = time.perf_counter()
            await _feed(devices, frames, cfg.rate)
            await asyncio.wait_for(all_paid.wait(), max(120.0, total / 50))
            t1 = max(receiver.arrived.values())
            after = [server.sample() for server in servers]
            load_cpu = time.process_time() - load_cpu0
            servers[0].profile_stop()
        finally:
            stop.set()
            await asyncio.gather(*(d.task for d in devices if d.task), return_exceptions=True)
            await runner.cleanup()
    e2e = [receiver.arrived[order_of_event[e]] - t for e, t in sent.items()]
    acks = [acked[e] - t for e, t in sent.items() if e in acked]
    cpu = [a.cpu_s - b.cpu_s for a, b in zip(after, before, strict=True)]
    result: dict[str, Any] = {
        "mode": "e2e",
        "instances": len(servers),
        "devices": cfg.devices,
        "events": len(e2e),
        "window": cfg.window,
        "offered_rate": cfg.rate or None,
        "events_per_s": round(len(e2e) / (t1 - t0), 1),
        "acked_per_s": round(len(acks) / (max(acked.values()) - t0), 1),
        **_ms_summary("", e2e),
        **_ms_summary("ack_", acks),
        "webhooks_verified": receiver.verified,
        "bad_signatures": receiver.bad_signatures,
        "server_cpu_s_per_1000_events": round(sum(cpu) * 1000 / len(e2e), 3),
        "server_cpu_util": round(sum(cpu) / (t1 - t0), 3),
        "server_peak_rss_mib": round(sum(a.hwm_kib for a in after) / 1024, 1),
        "load_cpu_util": round(load_cpu / (t1 - t0), 3),
    }
    if len(servers) > 1:
        per: list[dict[str, Any]] = []
        for n in range(len(servers)):
            its = [receiver.arrived[order_of_event[e]] - t for e, t in sent.items() if instance_of_event[e] == n]
            per.append(
                {
                    "events": len(its),
                    **_ms_summary("", its),
                    "cpu_s_per_1000_events": round(cpu[n] * 1000 / max(1, len(its)), 3),
                    "cpu_util": round(cpu[n] / (t1 - t0), 3),
                    "peak_rss_mib": round(after[n].hwm_kib / 1024, 1),
                }
            )
        result["per_instance"] = per
    return result


async def _orders_on(
    session: aiohttp.ClientSession, servers: list[BenchServer], key: str, total: int
) -> list[dict[str, Any]]:
    """`total` pending orders with distinct amounts, created through the instances in turn."""
    if len(servers) == 1:
        made, _ = await _create_orders(session, servers[0].base_url, key, total, 20)
        return made
    orders: list[dict[str, Any]] = [{} for _ in range(total)]
    clients = max(1, 20 // len(servers))
    parts = await asyncio.gather(
        *(
            _create_orders(
                session,
                server.base_url,
                key,
                len(range(n, total, len(servers))),
                clients,
                first_amount=100 + n * total,
                prefix=f"bench{n}",
            )
            for n, server in enumerate(servers)
        )
    )
    for n, (made, _) in enumerate(parts):
        for j, order in enumerate(made):
            orders[n + j * len(servers)] = order
    return orders


async def _feed(devices: list[SimDevice], frames: list[list[dict[str, Any]]], rate: float) -> None:
    """Put the reports into the outboxes: all at once, or spread evenly at `rate` per second overall."""
    if rate <= 0:
        for d, fs in zip(devices, frames, strict=True):
            for f in fs:
                d.outbox.add(f)
            d.client.wake()
        return
    order = [
        (d, fs[i])
        for i in range(max(len(fs) for fs in frames))
        for d, fs in zip(devices, frames, strict=True)
        if i < len(fs)
    ]
    loop = asyncio.get_running_loop()
    start = loop.time()
    for n, (d, f) in enumerate(order):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        d.outbox.add(f)
        d.client.wake()


async def run_idle(server: BenchServer, count: int, seconds: float, log: Callable[[str], None]) -> dict[str, Any]:
    """`count` authenticated devices connected and heartbeating; the server's memory and CPU."""
    stop = asyncio.Event()
    devices: list[SimDevice] = []
    async with _session() as session:
        try:
            key = await _merchant(session, server.base_url)
            log(f"pairing {count} devices")
            paired = await pair_devices(session, server.base_url, key, count)
            await asyncio.sleep(1.0)
            before = server.sample()
            log(f"connecting {count} devices")
            devices = [
                SimDevice.create(server.base_url, did, k, window=1, on_send=None, on_ack=None) for did, k in paired
            ]
            await _connect_all(devices, stop)
            await asyncio.sleep(min(5.0, seconds))  # let the first heartbeats settle
            connected = server.sample()
            log(f"{count} devices connected; measuring idle CPU for {seconds:.0f} s")
            server.profile_start()
            t0 = time.perf_counter()
            await asyncio.sleep(seconds)
            idle = server.sample()
            server.profile_stop()
            elapsed = time.perf_counter() - t0
            still = sum(1 for d in devices if d.connected.is_set() and d.task is not None and not d.task.done())
            async with session.get(server.base_url + "/healthz") as r:
                health = await r.json()
        finally:
            stop.set()
            await asyncio.gather(*(d.task for d in devices if d.task), return_exceptions=True)
    return {
        "mode": "idle",
        "idle_devices": count,
        "connected_at_end": int(health.get("connected_devices", still)),
        "server_rss_before_mib": round(before.rss_kib / 1024, 1),
        "server_rss_connected_mib": round(connected.rss_kib / 1024, 1),
        "server_rss_per_device_kib": round((connected.rss_kib - before.rss_kib) / count, 2),
        "idle_seconds": round(elapsed, 1),
        "idle_cpu_util": round((idle.cpu_s - connected.cpu_s) / elapsed, 4),
        "server_peak_rss_mib": round(idle.hwm_kib / 1024, 1),
    }


async def run_orders(server: BenchServer, count: int, clients: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Order creation through the HTTP API with `clients` concurrent clients."""
    async with _session() as session:
        key = await _merchant(session, server.base_url)
        await _create_orders(
            session, server.base_url, key, min(count, 50), clients, first_amount=5_000_000, prefix="warm"
        )
        log(f"creating {count} orders with {clients} clients")
        server.profile_start()
        before = server.sample()
        t0 = time.perf_counter()
        orders, latencies = await _create_orders(session, server.base_url, key, count, clients)
        elapsed = time.perf_counter() - t0
        after = server.sample()
        server.profile_stop()
    created = sum(1 for o in orders if o.get("status") == "pending")
    return {
        "mode": "orders",
        "orders": created,
        "clients": clients,
        "orders_per_s": round(created / elapsed, 1),
        **_ms_summary("", latencies),
        "server_cpu_s_per_1000_orders": round((after.cpu_s - before.cpu_s) * 1000 / max(1, created), 3),
        "server_peak_rss_mib": round(after.hwm_kib / 1024, 1),
    }
