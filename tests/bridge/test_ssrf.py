"""SSRF policy through real sockets: the transport's checks after DNS and on connect, the sender child, and
refusals through the real app (the pure rules are in test_ssrf_rules.py)."""

from __future__ import annotations

import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.core.ssrf import is_forbidden_address
from bridge.sender import SenderProcess
from bridge.transport import AiohttpTransport, ForbiddenTarget, guarded_socket
from tests.harness import eventually, make_settings, running_bridge, running_handler, running_receiver


class FixedResolver(AbstractResolver):
    """DNS that answers every name with one address: a public-looking name pointing at loopback."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


@pytest.mark.parametrize("allow", [False, True])
async def test_a_name_resolving_to_loopback_is_checked_after_dns(allow: bool) -> None:
    """A name resolving to 127.0.0.1 is refused after DNS by default and reaches the receiver when allowed."""
    resolver = FixedResolver("127.0.0.1")
    transport = AiohttpTransport(allow_private=allow, resolver=resolver)
    try:
        async with running_receiver() as rec:
            url = f"http://hooks.example.test:{_port(rec.url)}/hook"
            result = await transport.send(url, {"webhook-id": "evt_1"}, b'{"type":"x"}', 5.0)
            assert resolver.asked == ["hooks.example.test"]
            if allow:
                assert result.status == 200 and result.error is None
                assert len(rec.requests) == 1 and rec.requests[0][0]["user-agent"] == "Paybridge-Webhooks/0.1"
            else:
                assert result.status is None and result.error is not None
                assert result.error.startswith("forbidden_target") and "127.0.0.1" in result.error
                assert rec.requests == []
    finally:
        await transport.close()


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "2130706433", "localhost", "127。0。0。1", "①②⑦.0.0.1", "127.0.0.1.", "localhost."]
)
async def test_loopback_literals_are_refused_without_connecting(host: str) -> None:
    """IP literals (in any spelling, Unicode full stops and digits and trailing dots included) and localhost
    are refused before any connection is made: the receiver on 127.0.0.1 gets nothing."""
    transport = AiohttpTransport(allow_private=False)
    try:
        async with running_receiver() as rec:
            result = await transport.send(f"http://{host}:{_port(rec.url)}/hook", {}, b"{}", 5.0)
            assert result.error is not None and result.error.startswith("forbidden_target")
            assert rec.requests == []
    finally:
        await transport.close()


async def test_transport_reads_at_most_64k_and_parses_retry_after() -> None:
    """An endless response body does not hold the transport until its timeout; Retry-After is returned in seconds."""

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=503, headers={"Retry-After": "120"})
        await resp.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(100_000):  # ~6 GB: only a reader that stops early gets an answer in time
                await resp.write(chunk)
        except ConnectionError:
            pass
        return resp

    transport = AiohttpTransport(allow_private=True)
    try:
        async with running_handler(endless) as url:
            result = await transport.send(f"{url}/x", {}, b"{}", 30.0)
        assert result.status == 503 and result.retry_after == 120 and result.error is None
    finally:
        await transport.close()


async def _order_closed_to(b: Any, url: str) -> dict[str, Any]:
    """Create a merchant and an order with `url` as notify_url, close it; return the merchant."""
    m = dict(await b.merchant())
    order = await b.order(m["api_key"], "1.00", notify_url=url)
    status, _ = await b.call("POST", f"/v1/orders/{order['id']}/close", token=m["api_key"])
    assert status == 200
    return m


async def test_delivery_to_loopback_is_refused_by_default(tmp_path: Path) -> None:
    """With private webhooks off, a notify_url whose host NAME resolves to loopback passes creation but is not
    called at delivery: failed, forbidden_target."""
    name = socket.gethostname()
    if not all(is_forbidden_address(ai[4][0]) for ai in socket.getaddrinfo(name, None)):
        pytest.skip("this machine's hostname does not resolve to a loopback or private address")
    settings = replace(make_settings(tmp_path / "d"), allow_private_webhooks=False)
    async with running_bridge(settings) as b, running_receiver() as rec:
        m = await _order_closed_to(b, rec.url.replace("127.0.0.1", name))

        async def failed() -> list[dict[str, Any]]:
            _, page = await b.call("GET", "/v1/deliveries?status=failed", token=m["api_key"])
            return list(page["data"])

        [d] = await eventually(failed, lambda ds: len(ds) == 1)
        assert d["attempts"] == 1 and d["last_status_code"] is None
        assert d["last_error"].startswith("forbidden_target")
        assert rec.requests == []
        registry = b.ctx.metrics.registry
        assert registry.get_sample_value("paybridge_webhook_attempts_total", {"outcome": "forbidden_target"}) == 1


async def test_private_notify_url_is_refused_at_order_creation(tmp_path: Path) -> None:
    """With private webhooks off, an order whose notify_url is a private IP literal is refused with 400."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), allow_private_webhooks=False)) as b:
        m = await b.merchant()
        status, out = await b.call(
            "POST",
            "/v1/orders",
            token=m["api_key"],
            json_body={
                "merchant_order_id": "x",
                "amount": "1.00",
                "channel": "alipay",
                "notify_url": "http://10.1.2.3/n",
            },
        )
        assert status == 400 and out["error"]["code"] == "forbidden_webhook_target"


async def test_delivery_to_loopback_is_allowed_when_configured(tmp_path: Path) -> None:
    """With allow_private_webhooks the same notify_url on 127.0.0.1 receives the order.closed webhook."""
    async with (
        running_bridge(make_settings(tmp_path / "d", allow_private_webhooks=True)) as b,
        running_receiver() as rec,
    ):
        await _order_closed_to(b, rec.url)
        await rec.wait_for(lambda: len(rec.events("order.closed")) == 1)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://localhost/x",
        "http://10.0.0.5/x",
        "http://169.254.169.254/",
        "http://[::1]/x",
        "http://[fd00:ec2::254]/x",
        "http://192.168.1.1/x",
        "http://100.64.0.1/x",
        "http://2130706433/x",
    ],
)
async def test_endpoint_creation_refuses_private_targets(tmp_path: Path, url: str) -> None:
    """Without PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS, endpoints on private or loopback literals are refused with 400."""
    settings = make_settings(tmp_path / "d", allow_private_webhooks=False)
    async with running_bridge(settings) as b:
        m = await b.merchant()
        status, out = await b.call("POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": url})
        assert status == 400 and out["error"]["code"] == "forbidden_webhook_target"
        status, out = await b.call(
            "POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": "https://hooks.example.com/x"}
        )
        assert status == 201


async def test_the_connected_address_is_checked_whatever_the_host_looked_like() -> None:
    """A real aiohttp connector with the guard cannot reach loopback even when nothing checked the URL first:
    the check sits on the socket, after every spelling and resolution."""
    connector = aiohttp.TCPConnector(socket_factory=guarded_socket)
    async with running_receiver() as rec, aiohttp.ClientSession(connector=connector) as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await session.post(rec.url, data=b"{}")
        assert isinstance(caught.value.os_error, ForbiddenTarget)
        assert rec.requests == []


@pytest.mark.parametrize("host", ["127。0。0。1", "①②⑦.0.0.1", "localhost."])
async def test_the_sender_child_refuses_unicode_loopback(host: str) -> None:
    """The sender process (the delivery path in production) refuses the same spellings."""
    guarded = SenderProcess(allow_private=False)
    try:
        async with running_receiver() as rec:
            result = await guarded.send(f"http://{host}:{_port(rec.url)}/hook", {}, b"{}", 5.0)
            assert result.error is not None and result.error.startswith("forbidden_target")
            assert rec.requests == []
    finally:
        await guarded.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://127。0。0。1:9/x",
        "http://127．0．0．1/x",
        "http://①②⑦.0.0.1/x",
        "http://169。254。169。254/latest/meta-data",
        "http://localhost./x",
        "http://127.0.0.1./x",
        "http://[::1]./x",
    ],
)
async def test_unicode_spellings_are_refused_at_creation(tmp_path: Path, url: str) -> None:
    """Webhook endpoints and orders' notify_url with these hosts are refused: forbidden_webhook_target
    (or invalid_url where the URL is not a URL at all)."""
    async with running_bridge(make_settings(tmp_path / "d", allow_private_webhooks=False)) as b:
        m = await b.merchant()
        status, out = await b.call("POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": url})
        assert status == 400 and out["error"]["code"] in ("forbidden_webhook_target", "invalid_url")
        status, out = await b.call(
            "POST",
            "/v1/orders",
            token=m["api_key"],
            json_body={"merchant_order_id": "u", "amount": "1.00", "channel": "alipay", "notify_url": url},
        )
        assert status == 400 and out["error"]["code"] in ("forbidden_webhook_target", "invalid_url")
        _, endpoints = await b.call("GET", "/v1/webhook-endpoints", token=m["api_key"])
        assert endpoints["data"] == []
