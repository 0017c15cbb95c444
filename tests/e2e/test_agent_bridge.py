"""End to end: the real agent (subprocesses) talking to the real bridge (a subprocess) on loopback.

Pairing by QR link, a payment turning an order paid with one verified webhook, and the promise
the outbox makes: SIGKILL the agent or the bridge at any moment and every payment still arrives
exactly once.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from standardwebhooks.webhooks import Webhook

from tests.e2e.conftest import AgentCli, BridgeProcess, Shop, alipay_item, free_port, write_replay
from tests.harness import running_receiver

T = TypeVar("T")


async def until(fetch: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], timeout: float = 60.0) -> T:
    """Poll `fetch` until `predicate` holds (bounded, so a broken system fails instead of hanging)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s; last value: {value!r}"[:3000])
        await asyncio.sleep(0.1)


def assert_exactly_once(payments: list[dict[str, Any]], expected_amounts: list[str]) -> None:
    """One payment per expected notification: no loss, no duplicate event or notification."""
    assert Counter(p["amount"] for p in payments) == Counter(expected_amounts)
    assert len({p["event_id"] for p in payments}) == len(payments)
    assert len({p["notification"]["key"] for p in payments}) == len(payments)


async def test_a_payment_flows_from_the_phone_to_a_verified_webhook(
    bridge_process: BridgeProcess, agent_cli: AgentCli, tmp_path: Path
) -> None:
    """Pair by link, replay a shade: the order becomes paid and the shop gets one verified order.paid."""
    async with running_receiver() as receiver:
        shop = await bridge_process.shop(webhook_url=receiver.url)
        assert shop.webhook_secret is not None
        order = await bridge_process.order(shop, "5.00", merchant_order_id="A1001")
        device_id = await agent_cli.pair(await bridge_process.pairing_link(shop))
        shade = write_replay(
            tmp_path / "shade.jsonl",
            [
                {"packageName": "com.android.chrome", "title": "sale", "content": "5.00元 off", "when": 1, "id": 1},
                alipay_item(1, order["pay_amount"]),
                {"packageName": "com.eg.android.AlipayGphone", "title": "支付宝", "content": "你有一笔待领取的红包"},
            ],
        )
        code, _, err = await agent_cli.run("run", "--source", f"replay:{shade}", "--exit-when-drained")
        assert code == 0, err

        paid = await bridge_process.ok("GET", f"/v1/orders/{order['id']}", token=shop.api_key)
        assert paid["status"] == "paid" and paid["payment_id"]
        await receiver.wait_for(lambda: len(receiver.events("order.paid")) >= 1, timeout=30)
        await until(
            lambda: bridge_process.ok("GET", "/v1/deliveries?status=pending", token=shop.api_key),
            lambda page: page["data"] == [],
        )
        deliveries = [
            (headers, body) for headers, body in receiver.requests if json.loads(body)["type"] == "order.paid"
        ]
        assert len(deliveries) == 1
        headers, body = deliveries[0]
        event = Webhook(shop.webhook_secret).verify(body, headers)
        assert event["data"]["order"]["id"] == order["id"]
        assert event["data"]["order"]["merchant_order_id"] == "A1001"
        assert event["data"]["payment"]["device_id"] == device_id

    status = await agent_cli.status()
    assert (status["device_id"], status["outbox_depth"], status["last_seq"]) == (device_id, 0, 1)


async def test_sigkill_of_the_agent_mid_backlog_loses_and_repeats_nothing(
    bridge_process: BridgeProcess, agent_cli: AgentCli, tmp_path: Path
) -> None:
    """Killed with a full backlog, and again mid-drain, the agent still delivers every payment exactly once."""
    shop = await bridge_process.shop()
    await agent_cli.pair(await bridge_process.pairing_link(shop))
    amounts = [f"{1 + i / 100:.2f}" for i in range(1, 61)]
    shade = write_replay(tmp_path / "shade.jsonl", [alipay_item(i, a) for i, a in enumerate(amounts)])

    # 1. The bridge is down: the agent can only queue. Kill it once everything is in the outbox.
    await bridge_process.kill()
    first = await agent_cli.start("run", "--source", f"replay:{shade}", "--max-reconnect-delay", "0.2")
    queued = await until(agent_cli.status, lambda s: s["last_seq"] == len(amounts))
    assert queued["outbox_depth"] == len(amounts)
    first.send_signal(signal.SIGKILL)
    await first.communicate()

    # 2. The bridge is back: kill the agent again as soon as delivery has started.
    await bridge_process.start()
    second = await agent_cli.start("run", "--source", f"replay:{shade}", "--window", "1")
    await until(lambda: bridge_process.payments(shop), lambda p: len(p) >= 1)
    second.send_signal(signal.SIGKILL)
    await second.communicate()

    # 3. A third run re-reads the same shade, drains what is left, and exits.
    code, _, err = await agent_cli.run("run", "--source", f"replay:{shade}", "--exit-when-drained")
    assert code == 0, err
    assert_exactly_once(await bridge_process.payments(shop), amounts)
    status = await agent_cli.status()
    assert (status["outbox_depth"], status["last_seq"]) == (0, len(amounts))  # re-reads created no events


async def test_a_bridge_restart_while_the_agent_runs_drains_the_backlog(
    bridge_process: BridgeProcess, agent_cli: AgentCli
) -> None:
    """Payments seen while the bridge is dead wait in the outbox and arrive once after it restarts."""
    shop = await bridge_process.shop()
    order = await bridge_process.order(shop, "88.88")
    await agent_cli.pair(await bridge_process.pairing_link(shop))
    port = free_port()
    agent = await agent_cli.start(
        "run", "--source", f"http:127.0.0.1:{port}", "--max-reconnect-delay", "0.5", "--heartbeat-interval", "1"
    )
    try:
        await until(agent_cli.status, lambda s: s["connection"] == "connected")
        token = (agent_cli.state_dir / "http_token").read_text().strip()

        async def notify(shop_: Shop, items: list[dict[str, Any]]) -> None:
            assert bridge_process.session is not None
            for item in items:
                async with bridge_process.session.post(
                    f"http://127.0.0.1:{port}/notify", json=item, headers={"Authorization": f"Bearer {token}"}
                ) as r:
                    assert r.status == 202, await r.text()

        live = [f"{2 + i / 100:.2f}" for i in range(1, 11)]
        await notify(shop, [alipay_item(i, a) for i, a in enumerate(live)])
        await until(lambda: bridge_process.payments(shop), lambda p: len(p) == len(live))

        await bridge_process.kill()
        await until(agent_cli.status, lambda s: s["connection"] != "connected")
        backlog = [f"{3 + i / 100:.2f}" for i in range(1, 21)] + [order["pay_amount"]]
        await notify(shop, [alipay_item(100 + i, a) for i, a in enumerate(backlog)])
        waiting = await until(agent_cli.status, lambda s: s["last_seq"] == len(live) + len(backlog))
        assert waiting["outbox_depth"] == len(backlog)

        await bridge_process.start()
        payments = await until(lambda: bridge_process.payments(shop), lambda p: len(p) >= len(live) + len(backlog))
        await until(agent_cli.status, lambda s: s["outbox_depth"] == 0 and s["connection"] == "connected")
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)
        _, err = await agent.communicate()
    assert agent.returncode == 0, err.decode(errors="replace")[-3000:]
    assert_exactly_once(await bridge_process.payments(shop), live + backlog)
    assert len(payments) == len(live) + len(backlog)
    paid = await bridge_process.ok("GET", f"/v1/orders/{order['id']}", token=shop.api_key)
    assert paid["status"] == "paid"
