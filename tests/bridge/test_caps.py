"""Per-merchant caps (event streams, webhook endpoints, pairing codes) and pairing limits per client network."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from bridge.core.ratelimit import client_network
from tests.harness import TestDevice, make_settings, running_bridge


async def test_event_streams_are_capped_per_merchant(tmp_path: Path) -> None:
    """A merchant holds at most `max_event_streams` SSE streams (then 429 too_many_streams); others are unaffected."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), max_event_streams=2)) as b:
        a, other = await b.merchant("a"), await b.merchant("other")
        url = b.base_url + "/v1/events/stream"
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(2):
                r = await stack.enter_async_context(
                    b.session.get(url, headers={"Authorization": f"Bearer {a['api_key']}"})
                )
                assert r.status == 200
            status, out = await b.call("GET", "/v1/events/stream", token=a["api_key"])
            assert status == 429 and out["error"]["code"] == "too_many_streams"
            r = await stack.enter_async_context(
                b.session.get(url, headers={"Authorization": f"Bearer {other['api_key']}"})
            )
            assert r.status == 200


async def test_webhook_endpoints_are_capped_per_merchant(tmp_path: Path) -> None:
    """At most `max_webhook_endpoints` live endpoints (then 409 too_many_endpoints); deleting one makes room."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), max_webhook_endpoints=3)) as b:
        m = await b.merchant()
        ids = []
        for i in range(3):
            status, ep = await b.call(
                "POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": f"http://127.0.0.1:9/{i}"}
            )
            assert status == 201
            ids.append(ep["id"])
        status, out = await b.call(
            "POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": "http://127.0.0.1:9/x"}
        )
        assert status == 409 and out["error"]["code"] == "too_many_endpoints"
        status, _ = await b.call("DELETE", f"/v1/webhook-endpoints/{ids[0]}", token=m["api_key"])
        assert status == 200
        status, _ = await b.call(
            "POST", "/v1/webhook-endpoints", token=m["api_key"], json_body={"url": "http://127.0.0.1:9/y"}
        )
        assert status == 201


async def test_pairing_attempts_from_many_loopback_addresses_share_one_limit(tmp_path: Path) -> None:
    """Walking through 127.0.0.2, .3, ... does not escape the pairing limit: loopback counts as one network."""
    async with running_bridge(make_settings(tmp_path / "d")) as b:
        dev = TestDevice(b.ws_url)
        statuses = []
        for i in range(15):
            connector = aiohttp.TCPConnector(local_addr=(f"127.0.{i}.{i + 2}", 0))
            async with (
                aiohttp.ClientSession(connector=connector) as s,
                s.post(
                    b.base_url + "/v1/devices/pair",
                    json={"code": f"ZZZZZZ{i:02d}", "public_key": dev.public_key_b64, "name": "p"},
                ) as r,
            ):
                statuses.append(r.status)
        assert statuses[:10] == [404] * 10 and set(statuses[10:]) == {429}


async def test_pairing_codes_are_limited_per_merchant(tmp_path: Path) -> None:
    """A merchant cannot pile up live pairing codes (each one is another target for a guess); others still can."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), pairing_codes_per_minute=3)) as b:
        a, other = await b.merchant("a"), await b.merchant("other")
        statuses = [(await b.call("POST", "/v1/pairing-codes", token=a["api_key"]))[0] for _ in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        status, out = await b.call("POST", "/v1/pairing-codes", token=a["api_key"])
        assert status == 429 and out["error"]["code"] == "rate_limited"
        assert (await b.call("POST", "/v1/pairing-codes", token=other["api_key"]))[0] == 201


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("203.0.113.7", "203.0.113.0/24"),
        ("::ffff:203.0.113.9", "203.0.113.0/24"),
        ("127.0.0.1", "loopback"),
        ("127.45.6.7", "loopback"),
        ("::1", "loopback"),
        ("unknown", "unknown"),
    ],
)
def test_client_network(address: str, network: str) -> None:
    """IPv6 clients count per /64, IPv4 per /24, every loopback address as one."""
    assert client_network(address) == network
