"""A payment observed before expiry but delivered after the sweep marked the order expired pays it on time
(issue 10, finding 4): through the real server, websocket device, expiry sweep and webhook receiver."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.harness import eventually, make_settings, running_bridge, running_receiver


async def test_a_backlogged_report_pays_an_order_the_sweep_already_expired(tmp_path: Path) -> None:
    """The phone saw the payment while the order was pending, reports it after the sweep: order paid, not late,
    order.paid webhook; the payment is matched, not filed no_order."""
    settings = replace(make_settings(tmp_path / "d"), order_ttl_min=1, expiry_interval=0.05)
    async with running_bridge(settings) as b, running_receiver() as rec:
        m = await b.merchant()
        key = m["api_key"]
        device = await b.pair(key)
        await device.connect()
        seen_at = int(time.time() * 1000)  # inside the window: created_at >= seen_at, expires_at = created_at + 1 s
        order = await b.order(key, "6.00", expires_in=1, notify_url=rec.url)

        async def fetch() -> dict[str, Any]:
            _, fresh = await b.call("GET", f"/v1/orders/{order['id']}", token=key)
            return dict(fresh)

        await eventually(fetch, lambda o: o["status"] == "expired")
        await rec.wait_for(lambda: len(rec.events("order.expired")) == 1)
        ack = await device.pay(order["pay_amount_cents"], observed_at=seen_at)
        assert ack["status"] == "accepted"
        fresh = await fetch()
        assert fresh["status"] == "paid" and fresh["late"] is False and fresh["payment_id"] == ack["payment_id"]
        _, payment = await b.call("GET", f"/v1/payments/{ack['payment_id']}", token=key)
        assert payment["status"] == "matched" and payment["order_id"] == order["id"]
        await rec.wait_for(lambda: len(rec.events("order.paid")) == 1)
        [paid] = rec.events("order.paid")
        assert paid["data"]["order"]["id"] == order["id"] and paid["data"]["order"]["late"] is False
        await device.close()


async def test_a_report_observed_after_expiry_still_pays_late(tmp_path: Path) -> None:
    """The same order paid after its expiry (within the grace) stays a late match: the rule did not widen."""
    settings = replace(make_settings(tmp_path / "d"), order_ttl_min=1, expiry_interval=0.05)
    async with running_bridge(settings) as b:
        m = await b.merchant()
        key = m["api_key"]
        device = await b.pair(key)
        await device.connect()
        order = await b.order(key, "6.00", expires_in=1)

        async def fetch() -> dict[str, Any]:
            _, fresh = await b.call("GET", f"/v1/orders/{order['id']}", token=key)
            return dict(fresh)

        await eventually(fetch, lambda o: o["status"] == "expired")
        ack = await device.pay(order["pay_amount_cents"], observed_at=int(time.time() * 1000))
        assert ack["status"] == "accepted"
        fresh = await fetch()
        assert fresh["status"] == "paid" and fresh["late"] is True
        await device.close()
