"""Periodic sweeps isolate failures per row: one merchant's bad order cannot stop expiry for everyone."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge.store.database import Tx
from tests.harness import RunningBridge, eventually, make_settings, running_bridge, running_receiver


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


async def _status(bridge: RunningBridge, key: str, order_id: str) -> str:
    _, order = await bridge.call("GET", f"/v1/orders/{order_id}", token=key)
    return str(order["status"])


async def test_deep_metadata_is_refused_at_input(bridge: RunningBridge) -> None:
    """Metadata nested 260 deep (it fits in 4 KiB) is a clear 400, not an order whose events cannot be encoded."""
    m = await bridge.merchant()
    body = {"merchant_order_id": "deep", "amount": "1.00", "channel": "alipay", "metadata": _nested(260)}
    assert len(json.dumps(body["metadata"])) < 4096
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    assert status == 400 and out["error"]["code"] == "invalid_json" and "deep" in out["error"]["message"]
    # Ordinary nesting still works.
    body = {"merchant_order_id": "ok", "amount": "1.00", "channel": "alipay", "metadata": _nested(8)}
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], json_body=body)
    assert status == 201 and out["metadata"] == _nested(8)


async def test_one_bad_order_does_not_stop_expiry_for_other_merchants(tmp_path: Path) -> None:
    """An order whose event cannot be encoded (metadata stored before nesting was bounded) is expired
    without its event; every other merchant's orders still expire, with their webhooks, and free their amounts."""
    settings = replace(make_settings(tmp_path / "d"), order_ttl_min=1, expiry_interval=0.05)
    async with running_bridge(settings) as b, running_receiver() as rec:
        bad, good = await b.merchant("bad"), await b.merchant("good")
        status, _ = await b.call("POST", "/v1/webhook-endpoints", token=good["api_key"], json_body={"url": rec.url})
        assert status == 201
        poisoned = await b.order(bad["api_key"], "3.00", expires_in=3600)
        deep = json.dumps(_nested(300))

        def poison(tx: Tx) -> None:  # what an older bridge let in: metadata no encoder can write out
            tx.execute("UPDATE orders SET metadata = ?, expires_at = 0 WHERE id = ?", (deep, poisoned["id"]))

        await b.ctx.db.write(poison)
        others = [await b.order(good["api_key"], "3.00", expires_in=1) for _ in range(3)]
        for o in others:
            await eventually(lambda o=o: _status(b, good["api_key"], o["id"]), lambda s: s == "expired")
        await rec.wait_for(lambda: len(rec.events("order.expired")) == 3)
        assert {e["data"]["order"]["id"] for e in rec.events("order.expired")} == {o["id"] for o in others}
        assert await _status(b, bad["api_key"], poisoned["id"]) == "expired"
        # Both merchants' amounts are free again.
        assert (await b.order(good["api_key"], "3.00"))["pay_amount"] == "3.00"
        assert (await b.order(bad["api_key"], "3.00"))["pay_amount"] == "3.00"
