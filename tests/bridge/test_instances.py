"""Several bridge instances on one PostgreSQL schema: each delivery sent by one instance at a time,
a dead instance's deliveries taken over when its leases run out, each order expired once.

PostgreSQL only (SQLite is one machine, one writer): at `PAYBRIDGE_TEST_DATABASE_URL` or the local
default, skipped with a message saying how to run them when unreachable (failed under CI=true).
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from bridge.config import Settings
from tests import pg
from tests.harness import RunningBridge, eventually, make_settings, running_bridge, serve_process
from tests.harness import running_handler as running_receiver_handler


def _settings(tmp_path: Path, name: str, url: str, **overrides: Any) -> Settings:
    """An instance of its own (data dir, listening port) on the shared database and secrets key."""
    base: dict[str, Any] = {
        "database_url": url,
        "secrets_key_file": str(tmp_path / "secrets.key"),  # every instance on one database needs the same key
        "webhook_sender": "inline",
        "order_ttl_min": 1,
        "expiry_interval": 0.2,
    }
    return make_settings(tmp_path / name, **{**base, **overrides})


@dataclass
class Hooks:
    """A webhook receiver that counts requests per webhook-id and notices two arriving at once.

    `fail_first`: the first request of each webhook-id gets a 500, so every delivery's second attempt
    comes from a database poll, where both instances race for it. `hold_first`: the first request of
    each webhook-id is never answered (until `release`), like an endpoint that hangs."""

    fail_first: bool = False
    hold_first: bool = False
    seen: collections.Counter[str] = field(default_factory=collections.Counter)
    succeeded: collections.Counter[str] = field(default_factory=collections.Counter)
    active: collections.Counter[str] = field(default_factory=collections.Counter)
    overlaps: list[str] = field(default_factory=list)  # webhook-ids that arrived while one was in progress
    types: dict[str, str] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        webhook_id = request.headers["webhook-id"]
        body = json.loads(await request.read())
        self.types[webhook_id] = body["type"]
        self.seen[webhook_id] += 1
        first = self.seen[webhook_id] == 1
        self.active[webhook_id] += 1
        if self.active[webhook_id] > 1:
            self.overlaps.append(webhook_id)
        try:
            if first and self.hold_first:
                await self.release.wait()
            await asyncio.sleep(0.01)  # a window in which a second sender of this id would overlap
            if first and self.fail_first:
                return web.Response(status=500, text="try again")
            self.succeeded[webhook_id] += 1
            return web.Response(text="ok")
        finally:
            self.active[webhook_id] -= 1


async def _now(value: Any) -> Any:
    """`value`, as an awaitable for `eventually` (a receiver's counters are read in place)."""
    return value


async def _all_events(bridge: RunningBridge, key: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = ""
    while True:
        status, page = await bridge.call("GET", f"/v1/events?limit=1000{after}", token=key)
        assert status == 200, page
        out += page["data"]
        if not page["has_more"]:
            return out
        after = f"&after={page['data'][-1]['id']}"


async def _endpoint(bridge: RunningBridge, key: str, url: str) -> None:
    status, out = await bridge.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": url})
    assert status == 201, out


async def test_two_instances_send_each_webhook_once_at_a_time_and_expire_each_order_once(tmp_path: Path) -> None:
    """Two instances on one schema, orders created on one and paid through a phone on the other, more
    orders left to expire under both sweeps: every event reaches the endpoint, no webhook-id is ever
    in flight from both instances, each is answered 2xx exactly once (the first attempt of each fails
    on purpose, so every retry is a race between the two database polls), and N orders give exactly N
    order.expired events."""
    url = pg.fresh_database()
    hooks = Hooks(fail_first=True)
    async with (
        running_receiver_handler(hooks.handle) as receiver,
        running_bridge(_settings(tmp_path, "a", url)) as a,
        running_bridge(_settings(tmp_path, "b", url)) as b,
    ):
        key = (await a.merchant())["api_key"]
        await _endpoint(b, key, f"{receiver}/hook")
        phones = [await a.pair(key, "phone-a"), await b.pair(key, "phone-b")]
        for phone in phones:
            await phone.connect()
        paid = 30
        for i in range(paid):  # created on one instance, paid through the phone connected to the other
            order = await (a, b)[i % 2].order(key, f"{10 + i}.00")
            ack = await phones[(i + 1) % 2].pay(order["pay_amount_cents"])
            assert ack["status"] == "accepted", ack
        expiring = [await (a, b)[i % 2].order(key, f"{100 + i}.00", expires_in=1) for i in range(20)]

        async def events() -> list[dict[str, Any]]:
            return await _all_events(a, key)

        expired_types = lambda evs: [e for e in evs if e["type"] == "order.expired"]  # noqa: E731
        await eventually(events, lambda evs: len(expired_types(evs)) >= len(expiring), timeout=30)
        evs = await events()  # everything raised so far (the phones are still connected: no device.offline)
        ids = {e["id"] for e in evs}
        await eventually(lambda: _now(set(hooks.succeeded)), lambda done: ids <= done, timeout=30)
        for phone in phones:
            await phone.close()

    expired = [e["data"]["order"]["id"] for e in evs if e["type"] == "order.expired"]
    assert sorted(expired) == sorted(o["id"] for o in expiring)  # each once: no sweep did the work twice
    assert sum(e["type"] == "order.paid" for e in evs) == paid
    # Every webhook-id that reached the endpoint is a stored event (device.offline ones may come in
    # while the phones hang up, after the snapshot), and every stored one reached it.
    assert {w for w in hooks.seen if hooks.types[w] != "device.offline"} == ids
    assert hooks.overlaps == []  # never sent by both instances at once
    assert {hooks.succeeded[w] for w in ids} == {1}  # answered 2xx once each
    assert {hooks.seen[w] for w in ids} == {2}  # the failing first attempt, then one retry: no duplicate storm


def _serve(tmp_path: Path, url: str, lease: float) -> tuple[subprocess.Popen[str], str]:
    """`paybridge serve` as a real process on the shared database; returns it and its base URL."""
    return serve_process(
        tmp_path / "killed",
        database_url=url,
        secrets_key_file=str(tmp_path / "secrets.key"),
        allow_private_webhooks="true",
        webhook_lease=str(lease),
        webhook_timeout="120",
        webhook_schedule="0,0,0",
    )


async def test_a_killed_instances_deliveries_are_sent_by_another_once_its_leases_run_out(tmp_path: Path) -> None:
    """Instance A (a real process) sends webhooks to an endpoint that hangs; instance B leaves them
    alone while A lives and renews its leases; after SIGKILL of A, B sends each of them once the lease
    has run out, with the same webhook-id, and every delivery ends up succeeded."""
    url = pg.fresh_database()
    lease = 4.0  # margin: A renews every lease/3 even on a loaded 2-core CI machine
    hooks = Hooks(hold_first=True)
    async with (
        running_receiver_handler(hooks.handle) as receiver,
        running_bridge(_settings(tmp_path, "b", url, webhook_lease=lease)) as b,
    ):
        proc, a_url = await asyncio.to_thread(_serve, tmp_path, url, lease)
        try:
            key = (await b.merchant())["api_key"]
            await _endpoint(b, key, f"{receiver}/hook")
            phone = await b.pair(key)
            phone.ws_url = a_url.replace("http://", "ws://") + "/v1/devices/connect"  # the phone talks to A
            await phone.connect()
            for i in range(5):
                order = await b.order(key, f"{20 + i}.00")
                assert (await phone.pay(order["pay_amount_cents"]))["status"] == "accepted"
            ids = {e["id"] for e in await _all_events(b, key)}
            await eventually(lambda: _now(set(hooks.seen)), lambda seen: ids <= seen, timeout=15)
            # A holds them and renews its leases: B must not take any of them in 2.5 leases.
            await asyncio.sleep(2.5 * lease)
            assert set(hooks.seen.values()) == {1} and hooks.succeeded == collections.Counter()
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            killed_at = asyncio.get_running_loop().time()
            await eventually(lambda: _now(dict(hooks.succeeded)), lambda done: ids <= set(done), timeout=lease + 15)
            took = asyncio.get_running_loop().time() - killed_at
            seen, succeeded = dict(hooks.seen), dict(hooks.succeeded)  # before the hung handlers are let go
            # the receiver answered; B records outcomes in batches just after: wait for the record
            status, pending = await eventually(
                lambda: b.call("GET", "/v1/deliveries?status=pending", token=key),
                lambda answer: answer[0] == 200 and answer[1]["data"] == [],
            )
            assert status == 200 and pending["data"] == []
            await phone.close()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            hooks.release.set()
    assert set(seen) == ids
    assert set(seen.values()) == {2}  # A's hung attempt, then B's: at-least-once, no storm
    assert set(succeeded.values()) == {1}
    assert took <= lease + 15
