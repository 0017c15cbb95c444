"""The websocket client: auth, ordered windowed delivery, acks, heartbeats, reconnects, final codes."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.client import ConnectionState, DeviceClient, HeartbeatExtras
from device_agent.core.backoff import BackoffPolicy
from device_agent.core.parsers import parse
from device_agent.errors import AuthRejected
from device_agent.outbox import Outbox
from tests.device_agent.agent_fixtures import Paired, Session, alipay, pair_with, scripted_bridge
from tests.harness import RunningBridge, eventually

NO_WAIT = BackoffPolicy(base=0.0)


async def extras() -> HeartbeatExtras:
    return HeartbeatExtras(
        battery={"level": 64, "charging": False},
        listener={"ok": True, "source": "test", "error": None},
        last_notification_at={"com.eg.android.AlipayGphone": 1764206400990},
    )


def make_client(
    outbox: Outbox, *, url: str, device_id: str = "dev_test", key: Ed25519PrivateKey | None = None, **kw: object
) -> DeviceClient:
    return DeviceClient(
        ws_url=url,
        device_id=device_id,
        key=key or Ed25519PrivateKey.generate(),
        outbox=outbox,
        extras=extras,
        backoff=kw.pop("backoff", NO_WAIT),  # type: ignore[arg-type]
        rng=random.Random(0),
        **kw,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def running(client: DeviceClient) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(client.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


async def record_payments(outbox: Outbox, count: int, *, start: int = 0) -> list[str]:
    batch = [(n, parse(n)) for n in (alipay(start + i, f"{start + i + 1}.00") for i in range(count))]
    return [item.event_id for item in await outbox.record(batch, now_ms=int(time.time() * 1000))]


async def test_the_outbox_drains_into_a_real_bridge(bridge: RunningBridge, tmp_path: Path) -> None:
    """Queued payments reach the real bridge once each and leave the outbox when acked."""
    paired: Paired = await pair_with(bridge, tmp_path / "state")
    order = await bridge.order(paired.api_key, "2.00")
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        event_ids = await record_payments(outbox, 3)
        client = make_client(outbox, url=paired.record.ws_url, device_id=paired.record.device_id, key=paired.key)
        async with running(client):
            await eventually(outbox.depth, lambda d: d == 0)
            assert client.status.state is ConnectionState.CONNECTED
        assert client.status.state is ConnectionState.STOPPED
        assert client.status.acked["accepted"] == 3
    _, payments = await bridge.call("GET", "/v1/payments?limit=100", token=paired.api_key)
    assert sorted(p["event_id"] for p in payments["data"]) == sorted(event_ids)
    _, got = await bridge.call("GET", f"/v1/orders/{order['id']}", token=paired.api_key)
    assert got["status"] == "paid"


async def test_heartbeats_carry_battery_listener_and_depth_to_the_bridge(bridge: RunningBridge, tmp_path: Path) -> None:
    """The bridge stores the agent's heartbeat: battery, listener health, outbox depth, last seen."""
    paired = await pair_with(bridge, tmp_path / "state")
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=paired.record.ws_url, device_id=paired.record.device_id, key=paired.key)
        async with running(client):

            async def device() -> dict[str, object]:
                return (await bridge.call("GET", f"/v1/devices/{paired.record.device_id}", token=paired.api_key))[1]

            got = await eventually(device, lambda d: d["last_heartbeat"] is not None)
    hb = got["last_heartbeat"]
    assert hb["battery"] == {"level": 64, "charging": False}
    assert hb["listener"] == {"ok": True, "source": "test", "error": None}
    assert hb["outbox_depth"] == 0
    assert hb["last_notification_at"] == {"com.eg.android.AlipayGphone": 1764206400990}


async def test_a_wrong_key_is_a_final_4401(bridge: RunningBridge, tmp_path: Path) -> None:
    """Authenticating with a key the bridge does not know ends the client with AuthRejected(4401)."""
    paired = await pair_with(bridge, tmp_path / "state")
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=paired.record.ws_url, device_id=paired.record.device_id)
        with pytest.raises(AuthRejected) as info:
            await client.run(asyncio.Event())
    assert info.value.close_code == 4401 and info.value.exit_code == 5
    assert client.status.state is ConnectionState.REJECTED
    assert "bad signature" in (client.status.last_error or "")


async def test_revoking_the_device_is_a_final_4403(bridge: RunningBridge, tmp_path: Path) -> None:
    """A device revoked while connected is closed with 4403 and the client stops for good."""
    paired = await pair_with(bridge, tmp_path / "state")
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=paired.record.ws_url, device_id=paired.record.device_id, key=paired.key)
        task = asyncio.create_task(client.run(asyncio.Event()))

        async def state() -> ConnectionState:
            return client.status.state

        await eventually(state, lambda s: s is ConnectionState.CONNECTED)
        status, _ = await bridge.call("DELETE", f"/v1/devices/{paired.record.device_id}", token=paired.api_key)
        assert status in (200, 204)
        with pytest.raises(AuthRejected) as info:
            await task
    assert info.value.close_code == 4403
    assert "revoked" in info.value.message


async def test_after_a_drop_everything_unacked_is_resent_in_order_verbatim(tmp_path: Path) -> None:
    """A reconnect resends every unacknowledged report from the start, same bytes, seq order."""
    first: list[dict[str, object]] = []
    shared: list[Outbox] = []

    async def handler(s: Session) -> None:
        await s.authenticate()
        if s.number == 1:
            first.extend([await s.recv_report() for _ in range(3)])
            await s.ack(first[1])  # acked out of order; 1 and 3 stay in the outbox
            await eventually(shared[0].depth, lambda d: d == 2)  # the client has processed the ack
            await s.ws.close(1011, "internal")
            return
        while True:
            await s.ack(await s.recv_report())

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        shared.append(outbox)
        await record_payments(outbox, 3)
        bodies = {item.seq: item.body for item in await outbox.pending()}
        client = make_client(outbox, url=sb.url)
        async with running(client):
            await eventually(outbox.depth, lambda d: d == 0)
        second = [f for f in sb.sessions[1].received if f["type"] == "report"]
    assert [f["seq"] for f in first] == [1, 2, 3]
    assert [f["seq"] for f in second] == [1, 3]
    assert [json.loads(bodies[f["seq"]]) for f in second] == second  # byte-identical content


async def test_no_more_than_window_reports_are_in_flight(tmp_path: Path) -> None:
    """With window 2 the bridge sees two reports, then only heartbeats, and a third report after an ack."""
    between: list[str] = []

    async def handler(s: Session) -> None:
        await s.authenticate()
        a = await s.recv_report()
        b = await s.recv_report()
        heartbeats = 0
        while heartbeats < 3:  # the sender had every chance to send a third report before these
            frame = await s.recv()
            between.append(frame["type"])
            heartbeats += frame["type"] == "heartbeat"
        await s.ack(a)
        c = await s.recv_report()
        await s.ack(b)
        await s.ack(c)

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        await record_payments(outbox, 3)
        client = make_client(outbox, url=sb.url, window=2, heartbeat_interval=0.05)
        async with running(client):
            await eventually(outbox.depth, lambda d: d == 0)
    assert set(between) == {"heartbeat"}
    assert [f["seq"] for f in sb.sessions[0].received if f["type"] == "report"] == [1, 2, 3]


async def test_an_unanswered_report_is_resent_on_the_same_connection(tmp_path: Path) -> None:
    """If the bridge never acks a report (it failed to commit), the client sends it again."""

    async def handler(s: Session) -> None:
        await s.authenticate()
        once = await s.recv_report()
        again = await s.recv_report()
        assert again == once
        await s.ack(again)

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        await record_payments(outbox, 1)
        client = make_client(outbox, url=sb.url, ack_timeout=0.2)
        async with running(client):
            await eventually(outbox.depth, lambda d: d == 0)
    assert len(sb.sessions) == 1


@pytest.mark.parametrize("code", [1011, 4409, 4429, 1001])
async def test_other_close_codes_lead_to_a_reconnect(tmp_path: Path, code: int) -> None:
    """Internal errors, replacement, rate limiting and going-away are followed by a new connection."""

    async def handler(s: Session) -> None:
        await s.authenticate()
        if s.number == 1:
            await s.ws.close(code, "bye")

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=sb.url)
        async with running(client):
            await eventually(lambda: asyncio.sleep(0, len(sb.sessions)), lambda n: n >= 2)
            await eventually(lambda: asyncio.sleep(0, sb.sessions[1].received), lambda r: len(r) >= 1)
        assert sb.sessions[1].received[0]["type"] == "auth"  # the second connection authenticated again


async def test_a_rejected_report_is_dropped_from_the_outbox(tmp_path: Path) -> None:
    """`rejected` acks delete the report (it can never be accepted); counters say so."""

    async def handler(s: Session) -> None:
        await s.authenticate()
        r = await s.recv_report()
        await s.send({"type": "ack", "event_id": r["event_id"], "seq": r["seq"], "status": "rejected", "reason": "x"})

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        await record_payments(outbox, 1)
        client = make_client(outbox, url=sb.url)
        async with running(client):
            await eventually(outbox.depth, lambda d: d == 0)
        assert client.status.acked["rejected"] == 1


async def test_stopping_closes_the_websocket_with_1000(tmp_path: Path) -> None:
    """A requested stop ends the connection with a normal closure."""

    async def handler(s: Session) -> None:
        await s.authenticate()

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=sb.url)
        async with running(client):

            async def state() -> ConnectionState:
                return client.status.state

            await eventually(state, lambda s: s is ConnectionState.CONNECTED)
        await eventually(lambda: asyncio.sleep(0, list(sb.close_codes)), lambda c: c == [1000])


async def test_an_unreachable_bridge_means_backoff_not_failure(tmp_path: Path) -> None:
    """With nothing listening, the client keeps retrying (state backoff) until stopped."""
    async with scripted_bridge(lambda s: asyncio.sleep(0)) as sb:
        url = sb.url
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=url, backoff=BackoffPolicy(base=0.01, cap=0.05))
        async with running(client):

            async def attempt() -> int:
                return client.status.reconnect_attempt

            await eventually(attempt, lambda n: n >= 3)
            assert "cannot connect" in (client.status.last_error or "")
    assert client.status.state is ConnectionState.STOPPED


async def test_the_backoff_restarts_after_every_successful_authentication(tmp_path: Path) -> None:
    """Connections that authenticate and then drop always retry as attempt 1, never climbing the schedule."""
    attempts: list[int] = []

    async def handler(s: Session) -> None:
        await s.authenticate()
        if s.number <= 3:
            await s.ws.close(1011, "internal")

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        client: DeviceClient | None = None

        def on_change() -> None:
            assert client is not None
            if client.status.state is ConnectionState.BACKOFF:
                attempts.append(client.status.reconnect_attempt)

        client = make_client(outbox, url=sb.url, on_change=on_change)
        async with running(client):
            await eventually(lambda: asyncio.sleep(0, len(sb.sessions)), lambda n: n >= 4)
    assert attempts[:3] == [1, 1, 1]


async def test_an_oversized_frame_from_the_bridge_drops_the_connection(tmp_path: Path) -> None:
    """A frame over 64 KiB is refused (close 1009) and the client reconnects."""

    async def handler(s: Session) -> None:
        await s.authenticate()
        if s.number == 1:
            await s.send({"type": "heartbeat_ack", "server_time": 1, "pad": "x" * (64 * 1024)})
            await s.ws.wait_closed()

    async with scripted_bridge(handler) as sb, await Outbox.open(tmp_path / "o.db") as outbox:
        client = make_client(outbox, url=sb.url)
        async with running(client):
            await eventually(lambda: asyncio.sleep(0, len(sb.sessions)), lambda n: n >= 2)
    assert sb.close_codes[0] == 1009
