"""Signed webhooks end to end: a real receiver, verification with the reference `standardwebhooks` package,
retries with a stable webhook-id, 410, timeouts, redirects, SSRF, rotation, the delivery log, events and SSE."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from bridge.core.backoff import RetryPolicy
from bridge.core.ssrf import check_target, is_forbidden_address
from bridge.services.delivery import classify
from bridge.transport import TransportResult, parse_retry_after
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


def _verify(secret: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    return dict(Webhook(secret).verify(body, headers))


async def test_order_paid_is_delivered_and_verifies(bridge: RunningBridge) -> None:
    """An order.paid webhook reaches the endpoint and the order's notify_url, verified by standardwebhooks."""
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
        await rec.wait_for(lambda: len(rec.requests) == 4)
        assert len({h["webhook-id"] for h, _ in rec.requests}) == 1
        status, out = await bridge.call("POST", f"/v1/deliveries/{delivery['id']}/retry", token=m["api_key"])
        assert status in (200, 409)


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


async def test_ssrf_targets_are_refused_by_default(tmp_path: Path) -> None:
    """Without PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS, loopback and private URLs are refused at creation, and a
    name that resolves to loopback is refused at delivery (recorded as forbidden_target, not sent)."""
    async with (
        running_bridge(replace(make_settings(tmp_path / "d"), allow_private_webhooks=False)) as b,
        running_receiver() as rec,
    ):
        m = await b.merchant()
        for url in (
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://10.0.0.5/x",
            "http://169.254.169.254/",
            "http://[::1]/x",
            "http://192.168.1.1/x",
        ):
            status, out = await b.call("POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": url})
            assert status == 400 and out["error"]["code"] == "forbidden_webhook_target", url
        port = rec.url.split(":")[2].split("/")[0]
        # "localtest.me"-style names are not available offline; a notify_url through a name that resolves to
        # loopback: /etc/hosts always maps "localhost", which creation refuses, so use the machine's hostname.
        import socket

        name = socket.gethostname()
        addrs = {ai[4][0] for ai in socket.getaddrinfo(name, None)}
        if not all(is_forbidden_address(a) for a in addrs):
            pytest.skip("this machine's hostname does not resolve to a private address")
        await _paid_order(b, m["api_key"], notify_url=f"http://{name}:{port}/hook")
        page = await _deliveries(b, m["api_key"], "failed")
        assert page["data"][0]["last_error"].startswith("forbidden_target")
        assert rec.requests == []


@pytest.mark.parametrize(
    ("ip", "forbidden"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("100.64.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),
        ("0.0.0.0", True),  # noqa: S104 - an address under test, nothing binds to it
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("8.8.8.8", False),
        ("2606:4700::1111", False),
        ("not-an-ip", True),
    ],
)
def test_forbidden_addresses(ip: str, forbidden: bool) -> None:
    """The SSRF table: private, loopback, link-local, metadata, CGNAT, multicast and mapped forms are refused."""
    assert is_forbidden_address(ip) is forbidden


def test_check_target_rules() -> None:
    """A public name resolving to a private address is refused; allow_private lets everything through."""
    assert check_target("https://example.com/x", ["93.184.216.34"], allow_private=False) is None
    assert check_target("https://example.com/x", ["10.0.0.1"], allow_private=False) is not None
    assert check_target("http://127.0.0.1/x", [], allow_private=True) is None


def test_classify_outcomes() -> None:
    """2xx succeeds, 410 disables, forbidden targets fail at once, others retry until the schedule ends."""
    policy = RetryPolicy(schedule=(0, 5, 300), jitter=0.0)
    rng = random.Random(0)

    def r(status: int | None, error: str | None = None, retry_after: float | None = None) -> TransportResult:
        return TransportResult(status, retry_after, error, 1.0)

    assert classify(r(204), attempt=1, policy=policy, rng=rng).status == "succeeded"
    assert classify(r(410), attempt=1, policy=policy, rng=rng).disable_endpoint is True
    assert classify(r(None, "forbidden_target: x"), attempt=1, policy=policy, rng=rng).status == "failed"
    o = classify(r(500), attempt=1, policy=policy, rng=rng)
    assert (o.status, o.next_in, o.metric) == ("pending", 5.0, "http_error")
    assert classify(r(503, retry_after=60), attempt=1, policy=policy, rng=rng).next_in == 60
    assert classify(r(None, "timeout"), attempt=2, policy=policy, rng=rng).metric == "timeout"
    assert classify(r(500), attempt=3, policy=policy, rng=rng).status == "failed"


def test_parse_retry_after() -> None:
    """Retry-After takes seconds or an HTTP date."""
    assert parse_retry_after("120", 0) == 120
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 60) == 60
    assert parse_retry_after("soon", 0) is None


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
    """Lists never show secrets; another merchant gets 404 on your endpoints and deliveries."""
    a = await bridge.merchant("a")
    b = await bridge.merchant("b")
    ep = await _endpoint(bridge, a["api_key"], "http://127.0.0.1:9/x")
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


async def test_events_feed_and_sse_resume(bridge: RunningBridge) -> None:
    """GET /v1/events pages in order; the SSE stream resumes after Last-Event-ID and carries live events."""
    m = await bridge.merchant()
    key = m["api_key"]
    o1 = await bridge.order(key, "1.00")
    o2 = await bridge.order(key, "2.00")
    await bridge.call("POST", f"/v1/orders/{o1['id']}/close", token=key)
    await bridge.call("POST", f"/v1/orders/{o2['id']}/close", token=key)
    _, page = await bridge.call("GET", "/v1/events?limit=1", token=key)
    first = page["data"][0]
    assert first["type"] == "order.closed" and page["has_more"] is True
    _, rest = await bridge.call("GET", f"/v1/events?after={first['id']}", token=key)
    assert [e["data"]["order"]["id"] for e in rest["data"]] == [o2["id"]]
    status, bad = await bridge.call("GET", "/v1/events?after=evt_nope", token=key)
    assert status == 400 and bad["error"]["code"] == "unknown_event"

    async with (
        aiohttp.ClientSession() as s,
        s.get(
            bridge.base_url + "/v1/events/stream",
            headers={"Authorization": f"Bearer {key}", "Last-Event-ID": first["id"]},
        ) as resp,
    ):
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        seen: list[dict[str, Any]] = []

        async def read() -> None:
            async for line in resp.content:
                text = line.decode().strip()
                if text.startswith("data: "):
                    seen.append(json.loads(text[6:]))
                    if len(seen) == 2:
                        return

        reader = asyncio.create_task(read())
        o3 = await bridge.order(key, "3.00")
        await bridge.call("POST", f"/v1/orders/{o3['id']}/close", token=key)
        await asyncio.wait_for(reader, 10)
    assert [e["data"]["order"]["id"] for e in seen] == [o2["id"], o3["id"]]


async def test_receiver_helper_sanity() -> None:
    """The test receiver records what it is sent (guards the harness the other tests rely on)."""
    async with running_receiver() as rec, aiohttp.ClientSession() as s:
        async with s.post(rec.url, data=b'{"type": "x"}') as r:
            assert r.status == 200
        assert rec.events() == [{"type": "x"}]
        assert isinstance(rec, Receiver)
