"""The run loop against a real in-process bridge: dedupe, filtering, draining, stopping, status."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent.agent import Agent
from device_agent.client import ConnectionState
from device_agent.config import AgentSettings
from device_agent.core.backoff import BackoffPolicy
from device_agent.core.notifications import Notification
from device_agent.outbox import Outbox
from tests.device_agent.agent_fixtures import ALIPAY, ListSource, Paired, alipay, other_app, pair_with
from tests.harness import RunningBridge, eventually


async def no_battery() -> dict[str, Any] | None:
    return None


def make_agent(
    paired: Paired, source: ListSource, outbox: Outbox, *, key: Ed25519PrivateKey | None = None, **kw: Any
) -> Agent:
    settings = AgentSettings(
        state=paired.state, source="test", backoff=BackoffPolicy(base=0.0), status_interval=0.05, **kw
    )
    return Agent(
        settings=settings,
        device=paired.record,
        key=key or paired.key,
        source=source,  # type: ignore[arg-type]
        outbox=outbox,
        battery=no_battery,
    )


async def payments(bridge: RunningBridge, paired: Paired) -> list[dict[str, Any]]:
    status, body = await bridge.call("GET", "/v1/payments?limit=100", token=paired.api_key)
    assert status == 200, body
    return list(body["data"])


async def test_a_finite_source_is_delivered_and_the_agent_exits_when_drained(
    bridge: RunningBridge, tmp_path: Path
) -> None:
    """With exit_when_drained, run returns 0 once the source is done and every report is acked."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    source.push(alipay(1, "1.00"), alipay(2, "2.00"))
    source.push(alipay(3, "3.00"))
    source.finish()
    async with await Outbox.open(paired.state.outbox) as outbox:
        agent = make_agent(paired, source, outbox, exit_when_drained=True)
        assert await agent.run(asyncio.Event()) == 0
        assert await outbox.depth() == 0
    got = await payments(bridge, paired)
    assert sorted(p["amount"] for p in got) == ["1.00", "2.00", "3.00"]
    assert source.closed


async def test_rereading_the_same_shade_creates_no_new_reports(bridge: RunningBridge, tmp_path: Path) -> None:
    """A snapshot source repeating the whole shade each poll yields one report per notification."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    a, b = alipay(1, "5.00"), alipay(2, "5.00")  # two genuine payments of the same amount
    source.push(a)
    source.push(b, a)
    source.push(a, b)
    source.finish()
    async with await Outbox.open(paired.state.outbox) as outbox:
        assert await make_agent(paired, source, outbox, exit_when_drained=True).run(asyncio.Event()) == 0
        snap = await outbox.snapshot()
    assert snap.last_seq == 2
    got = await payments(bridge, paired)
    assert [p["amount"] for p in got] == ["5.00", "5.00"]
    assert len({p["event_id"] for p in got}) == 2


async def test_a_restarted_agent_rereading_the_shade_creates_nothing(bridge: RunningBridge, tmp_path: Path) -> None:
    """After a restart the persisted seen table keeps an already-handled notification from repeating."""
    paired = await pair_with(bridge, tmp_path / "state")
    shade = [alipay(1, "7.00"), other_app(1)]
    for _ in range(2):
        source = ListSource()
        source.push(*shade)
        source.finish()
        async with await Outbox.open(paired.state.outbox) as outbox:
            assert await make_agent(paired, source, outbox, exit_when_drained=True).run(asyncio.Event()) == 0
    async with await Outbox.open(paired.state.outbox) as outbox:
        assert (await outbox.snapshot()).last_seq == 1
    assert [p["amount"] for p in await payments(bridge, paired)] == ["7.00"]


async def test_ignored_notifications_are_not_sent(bridge: RunningBridge, tmp_path: Path) -> None:
    """Notifications of unwatched apps are remembered as seen but never reported."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    source.push(other_app(1), other_app(2), alipay(1, "9.00"))
    source.finish()
    async with await Outbox.open(paired.state.outbox) as outbox:
        agent = make_agent(paired, source, outbox, exit_when_drained=True)
        assert await agent.run(asyncio.Event()) == 0
        assert (await outbox.snapshot()).last_seq == 1
    assert [p["amount"] for p in await payments(bridge, paired)] == ["9.00"]
    assert set(agent.last_notification_at) == {ALIPAY}


async def test_text_a_payer_or_friend_writes_never_pays(bridge: RunningBridge, tmp_path: Path) -> None:
    """Issue 10 finding 3 end to end: a friend's chat saying 你已成功收款100.00元 pays nothing, and a 0.01
    transfer whose remark says it is paid as 0.01; only money Alipay itself announced reaches the bridge."""
    paired = await pair_with(bridge, tmp_path / "state")
    now = int(time.time() * 1000)
    chat = Notification(ALIPAY, "张三", "你已成功收款100.00元", now, f"0|{ALIPAY}|chat|null|10123")
    remark = Notification(
        ALIPAY, "转账到账提醒", "张三向你转账0.01元，备注：你已成功收款100.00元", now + 1, f"0|{ALIPAY}|tr|null|10123"
    )
    source = ListSource()
    source.push(chat, remark, alipay(1, "2.00"))
    source.finish()
    async with await Outbox.open(paired.state.outbox) as outbox:
        assert await make_agent(paired, source, outbox, exit_when_drained=True).run(asyncio.Event()) == 0
        assert (await outbox.snapshot()).last_seq == 2  # the chat message was never reported
    assert sorted(p["amount"] for p in await payments(bridge, paired)) == ["0.01", "2.00"]


async def test_stop_closes_cleanly_and_leaves_a_final_status(bridge: RunningBridge, tmp_path: Path) -> None:
    """Setting stop (what SIGTERM does) ends run with 0 and writes status.json with state stopped."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    n = alipay(1, "4.00")
    source.push(n)
    stop = asyncio.Event()
    async with await Outbox.open(paired.state.outbox) as outbox:
        agent = make_agent(paired, source, outbox)
        task = asyncio.create_task(agent.run(stop))
        await eventually(lambda: payments(bridge, paired), lambda p: len(p) == 1)
        await eventually(outbox.depth, lambda d: d == 0)
        stop.set()
        assert await task == 0
    status = json.loads(paired.state.status.read_text())
    assert status["connection"]["state"] == "stopped"
    assert status["device_id"] == paired.record.device_id
    assert status["outbox"]["depth"] == 0 and status["outbox"]["last_seq"] == 1
    assert status["listener"] == {"ok": True, "source": "test", "error": None}
    assert status["last_notification_at"] == {ALIPAY: n.when}
    assert source.closed


async def test_status_json_follows_the_running_agent(bridge: RunningBridge, tmp_path: Path) -> None:
    """While running, status.json shows the connection as connected and the outbox depth."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    stop = asyncio.Event()
    async with await Outbox.open(paired.state.outbox) as outbox:
        agent = make_agent(paired, source, outbox)
        task = asyncio.create_task(agent.run(stop))

        async def status() -> dict[str, Any]:
            try:
                return dict(json.loads(paired.state.status.read_text()))
            except (OSError, ValueError):
                return {}

        got = await eventually(status, lambda s: s.get("connection", {}).get("state") == "connected")
        stop.set()
        assert await task == 0
    assert got["outbox"]["depth"] == 0 and got["source"] == "test"


async def test_a_rejected_device_makes_run_return_5(bridge: RunningBridge, tmp_path: Path) -> None:
    """When the bridge refuses the device's key (4401), run stops reading and returns exit code 5."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    async with await Outbox.open(paired.state.outbox) as outbox:
        agent = make_agent(paired, source, outbox, key=Ed25519PrivateKey.generate())
        assert await agent.run(asyncio.Event()) == 5
    assert agent.client.status.state is ConnectionState.REJECTED
    status = json.loads(paired.state.status.read_text())
    assert status["connection"]["state"] == "rejected"


async def test_last_notification_times_survive_a_restart(bridge: RunningBridge, tmp_path: Path) -> None:
    """A new agent starts from the previous run's last_notification_at (from status.json)."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    n = alipay(1, "6.00")
    source.push(n)
    source.finish()
    async with await Outbox.open(paired.state.outbox) as outbox:
        assert await make_agent(paired, source, outbox, exit_when_drained=True).run(asyncio.Event()) == 0
    async with await Outbox.open(paired.state.outbox) as outbox:
        again = make_agent(paired, ListSource(), outbox)
    assert again.last_notification_at == {ALIPAY: n.when}


class FlakySource(ListSource):
    """A source whose first read fails (a listener bug), then behaves."""

    failed: bool = False

    async def read(self) -> list[Any]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("listener crashed")
        return await super().read()


async def test_a_failing_source_read_is_retried(bridge: RunningBridge, tmp_path: Path) -> None:
    """An exception from the source is logged and the next read still delivers its payments."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = FlakySource()
    source.push(alipay(1, "3.30"))
    source.finish()
    async with await Outbox.open(paired.state.outbox) as outbox:
        agent = make_agent(paired, source, outbox, exit_when_drained=True, poll_interval=0.01)
        assert await agent.run(asyncio.Event()) == 0
    assert source.failed
    assert [p["amount"] for p in await payments(bridge, paired)] == ["3.30"]


async def test_an_outbox_that_cannot_be_written_stops_the_agent_with_1(bridge: RunningBridge, tmp_path: Path) -> None:
    """If recording fails (the outbox is gone), run stops with exit code 1 instead of dropping payments."""
    paired = await pair_with(bridge, tmp_path / "state")
    source = ListSource()
    outbox = await Outbox.open(paired.state.outbox)
    agent = make_agent(paired, source, outbox)
    stop = asyncio.Event()
    task = asyncio.create_task(agent.run(stop))

    async def state() -> ConnectionState:
        return agent.client.status.state

    await eventually(state, lambda s: s is ConnectionState.CONNECTED)
    await outbox.close()
    source.push(alipay(1, "1.10"))
    assert await task == 1
    assert await payments(bridge, paired) == []
