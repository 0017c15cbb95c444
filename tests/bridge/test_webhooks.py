"""Signed webhooks end to end: a real receiver, verification with the reference `standardwebhooks` package,
retries with a stable webhook-id, Retry-After, 410, timeouts, redirects, rotation, endpoints and the delivery log.

(SSRF: test_ssrf.py; the worker in isolation: test_delivery.py; the events feed and SSE: test_events.py.)"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from bridge.bench.server import children
from tests.harness import (
    Receiver,
    RunningBridge,
    eventually,
    make_settings,
    running_bridge,
    running_handler,
    running_receiver,
)


async def _endpoint(bridge: RunningBridge, key: str, url: str, **body: Any) -> dict[str, Any]:
    status, out = await bridge.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": url, **body})
    assert status == 201, out
    return dict(out)


async def _paid_order(bridge: RunningBridge, key: str, **order: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    device = await bridge.pair(key)
    await device.connect()
    o = await bridge.order(key, "12.70", "wechat", **order)
    ack = await device.pay(o["pay_amount_cents"], channel="wechat", package="com.tencent.mm")
    await device.close()
    return o, ack


async def _page(bridge: RunningBridge, key: str, path: str) -> dict[str, Any]:
    status, out = await bridge.call("GET", path, token=key)
    assert status == 200, out
    return dict(out)


async def _deliveries(bridge: RunningBridge, key: str, status: str) -> dict[str, Any]:
    """Wait until at least one delivery has `status`; return that page."""
    return dict(
        await eventually(lambda: _page(bridge, key, f"/v1/deliveries?status={status}"), lambda p: bool(p["data"]))
    )


async def _raw(bridge: RunningBridge, key: str, path: str) -> str:
    async with bridge.session.get(bridge.base_url + path, headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200
        return await r.text()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return dict(Webhook(secret).verify(body, headers))


@pytest.mark.parametrize("sender", ["process", "inline"])
async def test_order_paid_is_delivered_and_verifies(tmp_path: Path, sender: str) -> None:
    """An order.paid webhook reaches the endpoint and the order's notify_url, verified by standardwebhooks,
    whether the HTTP calls run in the sender child process (the default) or in the bridge's own loop."""
    async with running_bridge(make_settings(tmp_path, webhook_sender=sender)) as bridge:
        await _order_paid_is_delivered_and_verifies(bridge)
        assert _sender_children() == (1 if sender == "process" else 0)


def _sender_children() -> int:
    """Live child processes of this test process running `bridge.sender`."""
    return sum(b"bridge.sender" in Path(f"/proc/{k}/cmdline").read_bytes() for k in children(os.getpid()))


async def _order_paid_is_delivered_and_verifies(bridge: RunningBridge) -> None:
    m = await bridge.merchant()
    async with running_receiver() as rec, running_receiver() as notify:
        ep = await _endpoint(bridge, m["api_key"], rec.url)
        assert ep["secret"].startswith("whsec_")
        order, ack = await _paid_order(bridge, m["api_key"], notify_url=notify.url)
        await rec.wait_for(lambda: len(rec.events("order.paid")) == 1)
        await notify.wait_for(lambda: len(notify.events("order.paid")) == 1)
        for receiver, secret in ((rec, ep["secret"]), (notify, m["webhook_secret"])):
            headers, body = next((h, b) for h, b in receiver.requests if json.loads(b)["type"] == "order.paid")
            event = _verify(secret, headers, body)
            assert event["data"]["order"]["id"] == order["id"] and event["data"]["order"]["status"] == "paid"
            assert event["data"]["payment"]["id"] == ack["payment_id"]
            assert headers["webhook-id"] == event["id"] and headers["content-type"] == "application/json"
        # the endpoint also got payment.received; the notify_url only order events
        assert {e["type"] for e in rec.events()} >= {"payment.received", "order.paid"}
        assert {e["type"] for e in notify.events()} == {"order.paid"}
        # one event, one webhook-id everywhere; the body is the stored event, byte for byte
        (h1, b1), (h2, b2) = (next((h, b) for h, b in r.requests if b"order.paid" in b) for r in (rec, notify))
        assert h1["webhook-id"] == h2["webhook-id"] and b1 == b2
        assert h1["user-agent"] == "Paybridge-Webhooks/0.1"
        raw = await _raw(bridge, m["api_key"], "/v1/events?limit=100")
        assert b1.decode() in raw


async def test_event_type_filter(bridge: RunningBridge) -> None:
    """An endpoint subscribed to order.paid only receives nothing else."""
    m = await bridge.merchant()
    async with running_receiver() as rec:
        await _endpoint(bridge, m["api_key"], rec.url, event_types=["order.paid"])
        await _paid_order(bridge, m["api_key"])
        await rec.wait_for(lambda: len(rec.events("order.paid")) == 1)
        await asyncio.sleep(0.2)
        assert {e["type"] for e in rec.events()} == {"order.paid"}


async def test_retries_keep_the_same_webhook_id(bridge: RunningBridge) -> None:
    """A 500 is retried on schedule with the same webhook-id and body until a 2xx; the log shows each attempt."""
    m = await bridge.merchant()
    async with running_receiver() as rec:
        rec.status = 500
        await _endpoint(bridge, m["api_key"], rec.url, event_types=["order.paid"])
        await _paid_order(bridge, m["api_key"])
        await rec.wait_for(lambda: len(rec.requests) >= 2)
        rec.status = 200
        await rec.wait_for(lambda: len(rec.requests) >= 3)
        ids = {h["webhook-id"] for h, _ in rec.requests}
        bodies = {b for _, b in rec.requests}
        assert len(ids) == 1 and len(bodies) == 1
        await asyncio.sleep(0.2)
        status, page = await bridge.call("GET", "/v1/deliveries?status=succeeded", token=m["api_key"])
        assert status == 200 and len(page["data"]) == 1
        d = page["data"][0]
        status, full = await bridge.call("GET", f"/v1/deliveries/{d['id']}", token=m["api_key"])
        assert [a["status_code"] for a in full["attempt_log"]] == [500, 500, 200]


async def test_exhausted_retries_fail_and_manual_retry_redelivers(bridge: RunningBridge) -> None:
    """After the last scheduled attempt a delivery is failed; POST /retry sends it again with the same id."""
    m = await bridge.merchant()
    async with running_receiver(status=503) as rec:
        await _endpoint(bridge, m["api_key"], rec.url, event_types=["order.paid"])
        await _paid_order(bridge, m["api_key"])
        await rec.wait_for(lambda: len(rec.requests) == 3)  # the test schedule has three attempts
        page = await _deliveries(bridge, m["api_key"], "failed")
        delivery = page["data"][0]
        assert delivery["attempts"] == 3 and delivery["last_status_code"] == 503
        rec.status = 200
        status, out = await bridge.call("POST", f"/v1/deliveries/{delivery['id']}/retry", token=m["api_key"])
        assert status == 200 and out["status"] == "pending"
        assert out["attempts"] == 0 and out["id"] == delivery["id"]
        await rec.wait_for(lambda: len(rec.requests) == 4)
        assert len({h["webhook-id"] for h, _ in rec.requests}) == 1
        page = await _deliveries(bridge, m["api_key"], "succeeded")
        assert page["data"][0]["attempts"] == 1 and page["data"][0]["succeeded_at"] is not None
        _, full = await bridge.call("GET", f"/v1/deliveries/{delivery['id']}", token=m["api_key"])
        assert [a["status_code"] for a in full["attempt_log"]] == [503, 503, 503, 200]


async def test_gone_disables_only_that_endpoint(bridge: RunningBridge) -> None:
    """A 410 disables its endpoint (no more deliveries there) while another endpoint keeps receiving."""
    m = await bridge.merchant()
    async with running_receiver(status=410) as gone, running_receiver() as ok:
        ep_gone = await _endpoint(bridge, m["api_key"], gone.url, event_types=["order.paid"])
        await _endpoint(bridge, m["api_key"], ok.url, event_types=["order.paid"])
        await _paid_order(bridge, m["api_key"])
        await ok.wait_for(lambda: len(ok.requests) == 1)
        await gone.wait_for(lambda: len(gone.requests) == 1)
        await asyncio.sleep(0.2)
        _, ep = await bridge.call("GET", f"/v1/webhook-endpoints/{ep_gone['id']}", token=m["api_key"])
        assert ep["disabled"] is True and ep["disabled_reason"] == "gone"
        await _paid_order(bridge, m["api_key"])
        await ok.wait_for(lambda: len(ok.requests) == 2)
        await asyncio.sleep(0.2)
        assert len(gone.requests) == 1


async def test_a_hanging_endpoint_does_not_delay_others(tmp_path: Path) -> None:
    """With one endpoint that never answers, deliveries to a healthy endpoint still arrive promptly."""
    hang = asyncio.Event()

    async def never(request: web.Request) -> web.Response:
        await hang.wait()
        return web.Response()

    settings = replace(make_settings(tmp_path / "d"), webhook_timeout=30.0)
    async with running_handler(never) as slow:
        try:
            async with running_bridge(settings) as b, running_receiver() as ok:
                m = await b.merchant()
                await _endpoint(b, m["api_key"], f"{slow}/slow", event_types=["order.paid"])
                await _endpoint(b, m["api_key"], ok.url, event_types=["order.paid"])
                for _ in range(6):  # more than the per-target limit of in-flight requests to the hanging host
                    await _paid_order(b, m["api_key"])
                await ok.wait_for(lambda: len(ok.requests) == 6, timeout=10)
        finally:
            hang.set()


async def test_timeout_is_an_error_and_retried(tmp_path: Path) -> None:
    """A receiver slower than the webhook timeout counts as a timeout and the delivery is retried."""
    calls: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) == 1:
            await asyncio.sleep(2)
        return web.Response()

    settings = replace(make_settings(tmp_path / "d"), webhook_timeout=0.3)
    async with running_handler(slow) as url, running_bridge(settings) as b:
        m = await b.merchant()
        await _endpoint(b, m["api_key"], f"{url}/x", event_types=["order.paid"])
        await _paid_order(b, m["api_key"])
        page = await _deliveries(b, m["api_key"], "succeeded")
        _, full = await b.call("GET", f"/v1/deliveries/{page['data'][0]['id']}", token=m["api_key"])
        assert full["attempt_log"][0]["error"] == "timeout" and len(calls) >= 2


async def test_redirects_are_not_followed(bridge: RunningBridge) -> None:
    """A 302 is a failed attempt, and the redirect target never gets the webhook."""
    m = await bridge.merchant()
    async with running_receiver() as target:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(target.url)

        async with running_handler(redirect) as url:
            await _endpoint(bridge, m["api_key"], f"{url}/r", event_types=["order.paid"])
            await _paid_order(bridge, m["api_key"])
            page = await _deliveries(bridge, m["api_key"], "failed")
            assert page["data"][0]["last_status_code"] == 302
            assert target.requests == []


async def test_retry_after_is_honoured(bridge: RunningBridge) -> None:
    """A 503 with Retry-After: 3600 schedules the next attempt an hour away, not on the short test schedule."""
    m = await bridge.merchant()

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "3600"})

    async with running_handler(busy) as url:
        await _endpoint(bridge, m["api_key"], f"{url}/x", event_types=["order.paid"])
        await _paid_order(bridge, m["api_key"])
        page = await eventually(
            lambda: _page(bridge, m["api_key"], "/v1/deliveries?status=pending"),
            lambda p: bool(p["data"]) and p["data"][0]["attempts"] == 1,
        )
        d = page["data"][0]
        assert d["last_status_code"] == 503
        nxt = datetime.fromisoformat(d["next_attempt_at"].replace("Z", "+00:00")).timestamp()
        upd = datetime.fromisoformat(d["updated_at"].replace("Z", "+00:00")).timestamp()
        assert 3500 < nxt - upd < 3700


async def test_rotation_signs_with_both_secrets(bridge: RunningBridge) -> None:
    """After rotate-secret, deliveries carry two signatures: the new secret and the old one both verify."""
    m = await bridge.merchant()
    async with running_receiver() as rec:
        ep = await _endpoint(bridge, m["api_key"], rec.url, event_types=["order.paid"])
        status, rotated = await bridge.call(
            "POST", f"/v1/webhook-endpoints/{ep['id']}/rotate-secret", token=m["api_key"]
        )
        assert status == 200 and rotated["secret"] != ep["secret"]
        await _paid_order(bridge, m["api_key"])
        await rec.wait_for(lambda: len(rec.requests) == 1)
        headers, body = rec.requests[0]
        assert len(headers["webhook-signature"].split()) == 2
        _verify(rotated["secret"], headers, body)
        _verify(ep["secret"], headers, body)


async def test_endpoint_secrets_are_shown_once_and_scoped(bridge: RunningBridge) -> None:
    """Lists never show secrets; another merchant gets 404 on your endpoints; unknown event types are refused."""
    a = await bridge.merchant("a")
    b = await bridge.merchant("b")
    ep = await _endpoint(bridge, a["api_key"], "http://127.0.0.1:9/x")
    assert {"id", "url", "event_types", "secret", "created_at"} <= set(ep) and ep["event_types"] == []
    _, one = await bridge.call("GET", f"/v1/webhook-endpoints/{ep['id']}", token=a["api_key"])
    assert one["url"] == "http://127.0.0.1:9/x" and "secret" not in one
    _, listing_b = await bridge.call("GET", "/v1/webhook-endpoints", token=b["api_key"])
    assert listing_b["data"] == []
    _, listing = await bridge.call("GET", "/v1/webhook-endpoints", token=a["api_key"])
    assert "secret" not in listing["data"][0] and ep["secret"] not in json.dumps(listing)
    for method, path in (
        ("GET", f"/v1/webhook-endpoints/{ep['id']}"),
        ("DELETE", f"/v1/webhook-endpoints/{ep['id']}"),
        ("POST", f"/v1/webhook-endpoints/{ep['id']}/rotate-secret"),
    ):
        status, _ = await bridge.call(method, path, token=b["api_key"])
        assert status == 404
    status, out = await bridge.call(
        "POST",
        "/v1/webhook-endpoints",
        token=a["api_key"],
        json_body={"url": "http://127.0.0.1:9/x", "event_types": ["order.refunded"]},
    )
    assert status == 400 and out["error"]["code"] == "invalid_field"


async def test_retry_conflicts_and_delete_disables_pending(bridge: RunningBridge) -> None:
    """A waiting delivery cannot be retried (409); deleting its endpoint disables it, and it stays unretryable."""
    m = await bridge.merchant()
    key = m["api_key"]

    async def busy(request: web.Request) -> web.Response:
        return web.Response(status=503, headers={"Retry-After": "3600"})

    async with running_handler(busy) as url:
        ep = await _endpoint(bridge, key, f"{url}/x", event_types=["order.closed"])
        order = await bridge.order(key, "3.00")
        await bridge.call("POST", f"/v1/orders/{order['id']}/close", token=key)
        page = await eventually(
            lambda: _page(bridge, key, "/v1/deliveries?status=pending"),
            lambda p: bool(p["data"]) and p["data"][0]["attempts"] == 1,
        )
        d = page["data"][0]
        status, out = await bridge.call("POST", f"/v1/deliveries/{d['id']}/retry", token=key)
        assert status == 409 and out["error"]["code"] == "delivery_pending"
        status, _ = await bridge.call("DELETE", f"/v1/webhook-endpoints/{ep['id']}", token=key)
        assert status == 200
        _, full = await bridge.call("GET", f"/v1/deliveries/{d['id']}", token=key)
        assert full["status"] == "disabled" and full["next_attempt_at"] is None
        status, out = await bridge.call("POST", f"/v1/deliveries/{d['id']}/retry", token=key)
        assert status == 409 and out["error"]["code"] == "endpoint_deleted"
        status, _ = await bridge.call("GET", f"/v1/webhook-endpoints/{ep['id']}", token=key)
        assert status == 404
        _, listing = await bridge.call("GET", "/v1/webhook-endpoints", token=key)
        assert listing["data"] == []


async def test_delivery_log_filters_pages_and_is_private(bridge: RunningBridge) -> None:
    """The log filters by status and event, pages with starting_after, and another merchant gets 404s."""
    m = await bridge.merchant("a")
    other = await bridge.merchant("b")
    key = m["api_key"]
    async with running_receiver() as rec:
        await _endpoint(bridge, key, rec.url)
        for amount in ("1.00", "2.00", "3.00"):
            o = await bridge.order(key, amount)
            await bridge.call("POST", f"/v1/orders/{o['id']}/close", token=key)
        page = await eventually(
            lambda: _page(bridge, key, "/v1/deliveries?status=succeeded"), lambda p: len(p["data"]) == 3
        )
    ids = [d["id"] for d in page["data"]]
    first = await _page(bridge, key, "/v1/deliveries?limit=2")
    assert [d["id"] for d in first["data"]] == ids[:2] and first["has_more"] is True
    rest = await _page(bridge, key, f"/v1/deliveries?limit=2&starting_after={ids[1]}")
    assert [d["id"] for d in rest["data"]] == ids[2:] and rest["has_more"] is False
    one = page["data"][1]
    assert set(one) == {
        "id", "event_id", "event_type", "endpoint_id", "url", "status", "attempts", "next_attempt_at",
        "last_status_code", "last_error", "created_at", "updated_at", "succeeded_at",
    }  # fmt: skip
    assert one["event_type"] == "order.closed" and one["succeeded_at"].endswith("Z")
    by_event = await _page(bridge, key, f"/v1/deliveries?event_id={one['event_id']}")
    assert [d["id"] for d in by_event["data"]] == [one["id"]]
    assert (await _page(bridge, key, "/v1/deliveries?status=failed"))["data"] == []
    status, out = await bridge.call("GET", "/v1/deliveries?status=lost", token=key)
    assert status == 400 and out["error"]["code"] == "invalid_query"
    # another merchant sees nothing of it
    assert (await _page(bridge, other["api_key"], "/v1/deliveries"))["data"] == []
    for method, path in (("GET", f"/v1/deliveries/{one['id']}"), ("POST", f"/v1/deliveries/{one['id']}/retry")):
        status, _ = await bridge.call(method, path, token=other["api_key"])
        assert status == 404
    status, _ = await bridge.call("GET", f"/v1/deliveries/{one['id']}")
    assert status == 401


async def test_receiver_helper_sanity() -> None:
    """The test receiver records what it is sent (guards the harness the other tests rely on)."""
    async with running_receiver() as rec, aiohttp.ClientSession() as s:
        async with s.post(rec.url, data=b'{"type": "x"}') as r:
            assert r.status == 200
        assert rec.events() == [{"type": "x"}]
        assert isinstance(rec, Receiver)
