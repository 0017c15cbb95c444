"""Several bridge instances on one PostgreSQL schema, part two: what one instance commits reaches the
others (event streams, revocations, device take-overs) through the database's LISTEN/NOTIFY bus; device
status stays right when a device moves between instances or an instance dies; pairing codes and the
pairing rate limit hold across instances.

PostgreSQL only (SQLite is one process): skipped with a message when unreachable (failed under CI=true).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import websockets

from bridge.clock import SystemClock
from bridge.config import Settings
from bridge.core.protocol import CLOSE_CODES
from bridge.services import endpoints as endpoints_service
from bridge.store.database import Tx, open_database
from tests import pg
from tests.harness import (
    RunningBridge,
    TestDevice,
    eventually,
    make_settings,
    running_bridge,
    serve_process,
    sse_frames,
    take_frames,
)

# A stream that missed its wake-up would still look again after its keep-alive (15 s): waiting
# less than that for a live event shows the bus woke it.
LIVE_S = 5.0


def _settings(tmp_path: Path, name: str, url: str, **overrides: Any) -> Settings:
    """An instance of its own (data dir, listening port) on the shared database and secrets key."""
    base: dict[str, Any] = {
        "database_url": url,
        "secrets_key_file": str(tmp_path / "secrets.key"),
        "webhook_sender": "inline",
    }
    return make_settings(tmp_path / name, **{**base, **overrides})


async def _close_orders(bridge: RunningBridge, key: str, n: int, base: int = 1) -> None:
    """`n` order.closed events, raised on `bridge` (orders of base, base + 1, ... yuan)."""
    for i in range(n):
        o = await bridge.order(key, f"{base + i}.00")
        status, _ = await bridge.call("POST", f"/v1/orders/{o['id']}/close", token=key)
        assert status == 200


async def _event_ids(bridge: RunningBridge, key: str) -> list[str]:
    status, page = await bridge.call("GET", "/v1/events?limit=1000", token=key)
    assert status == 200 and not page["has_more"], page
    return [e["id"] for e in page["data"]]


def _stream(session: aiohttp.ClientSession, bridge: RunningBridge, key: str, after: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}", **({"Last-Event-ID": after} if after else {})}
    return session.get(bridge.base_url + "/v1/events/stream", headers=headers)


async def test_a_stream_on_one_instance_carries_events_committed_on_another_at_once(tmp_path: Path) -> None:
    """An SSE stream open on B receives each event committed on A as it commits (well before the
    stream's own 15 s look-again), in the order of the feed."""
    url = pg.fresh_database()
    async with (
        running_bridge(_settings(tmp_path, "a", url)) as a,
        running_bridge(_settings(tmp_path, "b", url)) as b,
        aiohttp.ClientSession() as s,
    ):
        key = (await a.merchant())["api_key"]
        async with _stream(s, b, key) as resp:
            assert resp.status == 200
            frames = sse_frames(resp)
            seen: list[str] = []
            for i in range(3):
                await _close_orders(a, key, 1, base=10 * (i + 1))
                [frame] = await asyncio.wait_for(take_frames(frames, 1), LIVE_S)
                assert frame["event"] == "order.closed"
                seen.append(frame["id"])
        assert seen == await _event_ids(a, key)


async def test_a_webhook_test_event_sent_on_one_instance_reaches_a_stream_on_another_at_once(tmp_path: Path) -> None:
    """The dashboard's "send a test event" (the service it calls, on A) wakes a stream open on B too,
    not only at B's 15 s look-again."""
    url = pg.fresh_database()
    async with (
        running_bridge(_settings(tmp_path, "a", url, allow_private_webhooks=True)) as a,
        running_bridge(_settings(tmp_path, "b", url)) as b,
        aiohttp.ClientSession() as s,
    ):
        merchant = await a.merchant()
        key = merchant["api_key"]
        status, ep = await a.call(
            "POST", "/v1/webhook-endpoints", token=key, json_body={"url": "http://127.0.0.1:9/hook"}
        )
        assert status == 201, ep
        async with _stream(s, b, key) as resp:
            assert resp.status == 200
            frames = sse_frames(resp)
            sent = await endpoints_service.send_test_event(a.ctx, merchant["id"], ep["id"])
            [frame] = await asyncio.wait_for(take_frames(frames, 1), LIVE_S)
        assert frame["event"] == "webhook.test" and frame["id"] == sent.event_id


async def test_a_stream_resumed_on_another_instance_gets_exactly_the_rest(tmp_path: Path) -> None:
    """Both instances raise events at once; a client reads part of the stream from A, reconnects to B
    with Last-Event-ID while the writes go on, and between the two connections gets every event of the
    feed exactly once, in the feed's order."""
    url = pg.fresh_database()
    async with (
        running_bridge(_settings(tmp_path, "a", url)) as a,
        running_bridge(_settings(tmp_path, "b", url)) as b,
        aiohttp.ClientSession() as s,
    ):
        key = (await a.merchant())["api_key"]
        per_writer = 12
        writers = [
            asyncio.create_task(_close_orders(inst, key, per_writer, base=100 * (n + 1)))
            for n, inst in enumerate((a, b, a, b))
        ]
        total = per_writer * len(writers)
        try:
            async with _stream(s, a, key) as resp:
                first = await asyncio.wait_for(take_frames(sse_frames(resp), 10), 30)
            async with _stream(s, b, key, after=first[-1]["id"]) as resp:
                rest = await asyncio.wait_for(take_frames(sse_frames(resp), total - len(first)), 60)
        finally:
            await asyncio.gather(*writers)
        ids = [f["id"] for f in first + rest]
        assert len(ids) == len(set(ids)) == total  # none twice, none missing
        assert ids == await _event_ids(b, key)  # and in the feed's order


async def _closed_with(device: TestDevice) -> int | None:
    """The close code the bridge sent once the device's socket is closed (None while open)."""
    ws: Any = device.ws
    with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
        async with asyncio.timeout(0.2):
            while True:
                await ws.recv()
    return None if ws.close_code is None else int(ws.close_code)


async def test_revoking_on_one_instance_closes_the_socket_held_by_another(tmp_path: Path) -> None:
    """A phone connected to B is revoked through A's API: B closes its socket with the revocation
    close code at once, and the phone cannot come back on either instance."""
    url = pg.fresh_database()
    async with (
        running_bridge(_settings(tmp_path, "a", url)) as a,
        running_bridge(_settings(tmp_path, "b", url)) as b,
    ):
        key = (await a.merchant())["api_key"]
        phone = await a.pair(key)
        phone.ws_url = b.ws_url
        await phone.connect()
        status, out = await a.call("DELETE", f"/v1/devices/{phone.device_id}", token=key)
        assert status == 200 and out["revoked"] is True
        code = await eventually(lambda: _closed_with(phone), lambda c: c is not None, timeout=LIVE_S)
        assert code == CLOSE_CODES["device_revoked"]
        for inst in (a, b):
            phone.ws_url = inst.ws_url
            challenge = await phone.open()
            await phone.send(phone.auth_frame(challenge["nonce"]))
            reply = await phone.recv()
            assert reply["type"] == "error" and reply["code"] == "device_revoked"
            await phone.close()


async def _device(bridge: RunningBridge, key: str, device_id: str) -> dict[str, Any]:
    status, d = await bridge.call("GET", f"/v1/devices/{device_id}", token=key)
    assert status == 200, d
    return dict(d)


async def _device_events(bridge: RunningBridge, key: str, device_id: str) -> list[str]:
    status, page = await bridge.call("GET", "/v1/events?limit=1000", token=key)
    assert status == 200
    return [
        e["type"] for e in page["data"] if e["type"].startswith("device.") and e["data"]["device"]["id"] == device_id
    ]


async def test_a_phone_moving_to_another_instance_stays_online_through_stops_and_starts(tmp_path: Path) -> None:
    """A phone connected to A connects again to B (its old socket still open): A closes the old socket
    as replaced and its late close changes nothing; A then stops and an instance C starts (its start
    sweeps devices of dead instances): the phone stays online, held by B, with one device.online and
    no device.offline; when it hangs up on B it goes offline."""
    url = pg.fresh_database()
    async with running_bridge(_settings(tmp_path, "b", url)) as b:
        async with running_bridge(_settings(tmp_path, "a", url)) as a:
            key = (await a.merchant())["api_key"]
            old = await a.pair(key)
            await old.connect()
            await eventually(lambda: _device(b, key, old.device_id), lambda d: d["status"] == "online")
            new = TestDevice(b.ws_url, key=old.key, device_id=old.device_id)
            await new.connect()
            code = await eventually(lambda: _closed_with(old), lambda c: c is not None, timeout=LIVE_S)
            assert code == CLOSE_CODES["replaced"]
        # A has stopped: every handler of its sockets has finished
        async with running_bridge(_settings(tmp_path, "c", url)) as c:
            d = await _device(c, key, old.device_id)
            assert d["status"] == "online" and d["connected"] is True
            assert d["status_reasons"] == []
            assert await _device_events(c, key, old.device_id) in ([], ["device.online"])  # never an offline
        await new.heartbeat()  # B still serves it
        await new.close()
        await eventually(lambda: _device(b, key, old.device_id), lambda d: d["status"] == "offline")
        # (the feed lists an event once every older transaction on the server has ended: eventually)
        await eventually(
            lambda: _device_events(b, key, old.device_id), lambda evs: evs == ["device.online", "device.offline"]
        )


def _serve(tmp_path: Path, url: str, instance_ttl: float) -> tuple[subprocess.Popen[str], str]:
    """`paybridge serve` as a real process on the shared database; returns it and its base URL."""
    return serve_process(
        tmp_path / "killed",
        database_url=url,
        secrets_key_file=str(tmp_path / "secrets.key"),
        instance_ttl=str(instance_ttl),
    )


async def test_the_phones_of_a_killed_instance_go_offline_and_those_of_live_ones_stay_online(tmp_path: Path) -> None:
    """Three phones are connected to A (a real process), one to B; C runs too. After SIGKILL of A, the
    sweeps of B and C mark A's phones offline once A's heartbeat runs out: each with reason
    instance_gone and exactly one device.offline (two sweepers, no double work), and never B's phone;
    a phone of A's then connects to B and is online again."""
    url = pg.fresh_database()
    ttl = 2.0
    async with (
        running_bridge(_settings(tmp_path, "b", url, instance_ttl=ttl)) as b,
        running_bridge(_settings(tmp_path, "c", url, instance_ttl=ttl)),
    ):
        proc, a_url = await asyncio.to_thread(_serve, tmp_path, url, ttl)
        try:
            key = (await b.merchant())["api_key"]
            on_a = [await b.pair(key, f"a{i}") for i in range(3)]
            on_b = await b.pair(key, "b")
            for phone in on_a:
                phone.ws_url = a_url.replace("http://", "ws://") + "/v1/devices/connect"
            for phone in [*on_a, on_b]:
                await phone.connect()
                await eventually(lambda p=phone: _device(b, key, p.device_id), lambda d: d["status"] == "online")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            for phone in on_a:
                d = await eventually(
                    lambda p=phone: _device(b, key, p.device_id), lambda d: d["status"] == "offline", timeout=ttl + 10
                )
                assert d["status_reasons"] == ["instance_gone"] and d["connected"] is False
                await eventually(
                    lambda p=phone: _device_events(b, key, p.device_id),
                    lambda evs: evs == ["device.online", "device.offline"],
                )
            d = await _device(b, key, on_b.device_id)
            assert d["status"] == "online" and d["connected"] is True
            assert await _device_events(b, key, on_b.device_id) == ["device.online"]
            back = on_a[0]
            back.ws_url = b.ws_url
            await back.connect()
            await eventually(lambda: _device(b, key, back.device_id), lambda d: d["status"] == "online")
            for phone in (back, on_b):
                await phone.close()
            for phone in on_a[1:]:  # several sweeps of both instances later: still one offline each
                assert await _device_events(b, key, phone.device_id) == ["device.online", "device.offline"]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


async def test_one_pairing_code_redeemed_on_two_instances_at_once_pairs_one_device(tmp_path: Path) -> None:
    """Each of several pairing codes is redeemed on A and B at the same moment by two phones: exactly
    one of them pairs (201), the other is told the code is used (404), and one device exists per code."""
    url = pg.fresh_database()
    limits = {"pairing_attempts_per_minute": 100}  # the race, not the limit, is under test here
    async with (
        running_bridge(_settings(tmp_path, "a", url, **limits)) as a,
        running_bridge(_settings(tmp_path, "b", url, **limits)) as b,
    ):
        key = (await a.merchant())["api_key"]
        rounds = 6
        for _ in range(rounds):
            status, code = await a.call("POST", "/v1/pairing-codes", token=key)
            assert status == 201
            phones = [TestDevice(a.ws_url), TestDevice(b.ws_url)]
            results = await asyncio.gather(
                *(
                    inst.call(
                        "POST",
                        "/v1/devices/pair",
                        json_body={"code": code["code"], "public_key": p.public_key_b64, "name": "race"},
                    )
                    for inst, p in zip((a, b), phones, strict=True)
                )
            )
            assert sorted(status for status, _ in results) == [201, 404], results
        status, devices = await b.call("GET", "/v1/devices", token=key)
        assert status == 200 and len(devices["data"]) == rounds


async def test_the_pairing_attempt_limit_is_one_budget_across_instances(tmp_path: Path) -> None:
    """Wrong pairing codes tried on A and B in turn from one network: the limit counts them together,
    so the instances give no more guesses than one would; pairing codes per merchant likewise."""
    url = pg.fresh_database()
    limits = {"pairing_attempts_per_minute": 4, "pairing_codes_per_minute": 3}
    async with (
        running_bridge(_settings(tmp_path, "a", url, **limits)) as a,
        running_bridge(_settings(tmp_path, "b", url, **limits)) as b,
    ):
        phone = TestDevice(a.ws_url)
        statuses = []
        for i in range(6):
            status, _ = await (a, b)[i % 2].call(
                "POST",
                "/v1/devices/pair",
                json_body={"code": f"ZZZZZZ{i:02d}", "public_key": phone.public_key_b64, "name": "guess"},
            )
            statuses.append(status)
        assert statuses == [404] * 4 + [429] * 2
        key = (await a.merchant())["api_key"]
        codes = [(await (a, b)[i % 2].call("POST", "/v1/pairing-codes", token=key))[0] for i in range(5)]
        assert codes == [201] * 3 + [429] * 2


def _listeners(url: str, instance: str) -> list[int]:
    """Backend pids of an instance's listening connection(s)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (f"paybridge-listen {instance}",)
        ).fetchall()
    return [int(r[0]) for r in rows]


def _terminate(url: str, pid: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))


async def test_an_instance_whose_listening_connection_is_cut_catches_up_and_hears_again(tmp_path: Path) -> None:
    """B's listening connection is terminated by the server and a phone on B is revoked through A at
    that moment: B's socket of it is closed all the same (heard, or re-checked after the gap when B
    listens again on a new connection), and a stream on B carries A's later events live again."""
    url = pg.fresh_database()
    async with (
        running_bridge(_settings(tmp_path, "a", url)) as a,
        running_bridge(_settings(tmp_path, "b", url)) as b,
        aiohttp.ClientSession() as s,
    ):
        key = (await a.merchant())["api_key"]
        phone = await a.pair(key)
        phone.ws_url = b.ws_url
        await phone.connect()
        [before] = await asyncio.to_thread(_listeners, url, b.ctx.bus.instance)
        await asyncio.to_thread(_terminate, url, before)
        status, _ = await a.call("DELETE", f"/v1/devices/{phone.device_id}", token=key)
        assert status == 200
        code = await eventually(lambda: _closed_with(phone), lambda c: c is not None, timeout=LIVE_S + 5)
        assert code == CLOSE_CODES["device_revoked"]
        after = await eventually(
            lambda: asyncio.to_thread(_listeners, url, b.ctx.bus.instance), lambda pids: len(pids) == 1
        )
        assert after != [before]
        async with _stream(s, b, key) as resp:
            frames = sse_frames(resp)
            await _close_orders(a, key, 1, base=50)

            async def closed() -> dict[str, str]:
                async for f in frames:  # the device events before it, then the order's
                    if f["event"] == "order.closed":
                        return f
                raise AssertionError("the stream ended")

            await asyncio.wait_for(closed(), LIVE_S)


@dataclass
class SteppedClock:
    """The system clock plus an offset a test changes: an instance whose clock (or heartbeat) lags."""

    offset_ms: int = 0
    _system: SystemClock = field(default_factory=SystemClock)

    def now_ms(self) -> int:
        return self._system.now_ms() + self.offset_ms


def _alive_until(url: str, instance: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT alive_until FROM instances WHERE id = %s", (instance,)).fetchone()
    return 0 if row is None else int(row[0])


async def test_a_live_instance_thought_dead_takes_its_phone_back_at_the_next_heartbeat(tmp_path: Path) -> None:
    """A's heartbeat row runs out while A lives (here A's clock falls behind by more than the TTL):
    B's sweep marks A's phone offline; once A's row is current again, the phone's next heartbeat on A
    makes it online again, held by A, and later sweeps leave it alone."""
    url = pg.fresh_database()
    ttl = 1.5
    clock = SteppedClock()
    async with (
        running_bridge(_settings(tmp_path, "a", url, instance_ttl=ttl), clock=clock) as a,
        running_bridge(_settings(tmp_path, "b", url, instance_ttl=ttl)) as b,
    ):
        key = (await a.merchant())["api_key"]
        phone = await a.pair(key)
        await phone.connect()
        await phone.heartbeat()
        clock.offset_ms = -5000
        d = await eventually(lambda: _device(b, key, phone.device_id), lambda d: d["status"] == "offline", timeout=10)
        assert d["status_reasons"] == ["instance_gone"]
        clock.offset_ms = 0
        now = SystemClock().now_ms()
        await eventually(lambda: asyncio.to_thread(_alive_until, url, a.ctx.bus.instance), lambda t: t > now + 1000)
        await phone.heartbeat()
        d = await _device(b, key, phone.device_id)
        assert d["status"] == "online" and d["connected"] is True
        await eventually(
            lambda: _device_events(b, key, phone.device_id),
            lambda evs: evs == ["device.online", "device.offline", "device.online"],
        )
        await phone.heartbeat()
        assert (await _device(b, key, phone.device_id))["status"] == "online"
        await phone.close()


async def test_a_notification_is_heard_only_if_its_transaction_commits(tmp_path: Path) -> None:
    """Store level, two databases on one schema: what a committed job sends is heard by the other's
    listener, in order; what a failing job of the same batch sent (its savepoint undone) is not; a
    listener on another schema of the same database hears nothing."""
    url, elsewhere = pg.fresh_database(), pg.fresh_database()
    key = tmp_path / "secrets.key"
    sender, listener, stranger = (open_database(u, key_file=key) for u in (url, url, elsewhere))
    heard: list[str] = []
    strange: list[str] = []
    for db in (sender, listener, stranger):
        await db.open()
    try:
        await listener.listen(heard.append, lambda: None)
        await stranger.listen(strange.append, lambda: None)

        def ok(tx: Tx) -> None:
            tx.notify("kept")

        def fails(tx: Tx) -> None:
            tx.notify("undone")
            raise ValueError("this job fails: its notification goes with it")

        results = await asyncio.gather(sender.write(ok), sender.write(fails), return_exceptions=True)
        assert results[0] is None and isinstance(results[1], ValueError)
        await sender.write(lambda tx: tx.notify("last"))
        await eventually(lambda: _now(list(heard)), lambda h: "last" in h)
        assert heard == ["kept", "last"] and strange == []
    finally:
        for db in (sender, listener, stranger):
            await db.close()


async def _now(value: Any) -> Any:
    return value


async def test_a_notification_undone_with_a_savepoint_block_is_sent_again_after_it(tmp_path: Path) -> None:
    """Within one job, a payload sent in a savepoint block that is undone and sent again afterwards
    is heard once; one sent twice in a committed job is heard once too."""
    url = pg.fresh_database()
    key = tmp_path / "secrets.key"
    sender, listener = (open_database(url, key_file=key) for _ in range(2))
    heard: list[str] = []
    for db in (sender, listener):
        await db.open()
    try:
        await listener.listen(heard.append, lambda: None)

        def job(tx: Tx) -> None:
            try:
                with tx.savepoint():
                    tx.notify("again")
                    raise ValueError("undo this block")
            except ValueError:
                pass
            tx.notify("again")
            tx.notify("twice")
            tx.notify("twice")
            tx.notify("end")

        await sender.write(job)
        await eventually(lambda: _now(list(heard)), lambda h: "end" in h)
        assert heard == ["again", "twice", "end"]
    finally:
        for db in (sender, listener):
            await db.close()
