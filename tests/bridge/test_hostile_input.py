"""Hostile input gets a clear 4xx, never a 500: non-UTF-8 credentials, non-finite numbers, lone
surrogates, deep nesting."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.harness import RunningBridge


async def _raw(bridge: RunningBridge, request: bytes) -> tuple[int, Any]:
    """Send raw bytes as an HTTP/1.1 request (a client library would refuse to send them)."""
    parts = urlsplit(bridge.base_url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.strip() else None


@pytest.mark.parametrize("path", ["/v1/me", "/metrics", "/v1/orders"])
async def test_non_utf8_bearer_token_is_401(bridge: RunningBridge, path: str) -> None:
    """A bearer token of non-UTF-8 bytes is 401 with the error shape, not a 500."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + b"Authorization: Bearer pbk_\xff\xfe\xc3\x28\r\n\r\n"
    )
    status, out = await _raw(bridge, request)
    assert status == 401 and out["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    "metadata",
    [b'{"x": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}', b'{"x": 1e400}', b'{"x": "\\ud800"}', b'{"\\udc00": 1}'],
)
async def test_non_finite_numbers_and_lone_surrogates_are_400(bridge: RunningBridge, metadata: bytes) -> None:
    """Metadata with NaN, Infinity, an overflowing number or a lone surrogate is 400 invalid_json."""
    m = await bridge.merchant()
    body = b'{"merchant_order_id": "h1", "amount": "1.00", "channel": "alipay", "metadata": ' + metadata + b"}"
    status, out = await bridge.call(
        "POST", "/v1/orders", token=m["api_key"], data=body, headers={"Content-Type": "application/json"}
    )
    assert status == 400 and out["error"]["code"] == "invalid_json"
    _, page = await bridge.call("GET", "/v1/orders", token=m["api_key"])
    assert page["data"] == []


async def test_closing_an_order_never_meets_deep_metadata(bridge: RunningBridge) -> None:
    """Deep metadata is refused when the order is created, so closing (which encodes it into an event) cannot 500."""
    m = await bridge.merchant()
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    status, out = await bridge.call(
        "POST",
        "/v1/orders",
        token=m["api_key"],
        json_body={"merchant_order_id": "d1", "amount": "1.00", "channel": "alipay", "metadata": {"d": deep}},
    )
    assert status == 400 and out["error"]["code"] == "invalid_json"
    order = await bridge.order(m["api_key"], "1.00", metadata={"d": [[[[1]]]]})
    status, closed = await bridge.call("POST", f"/v1/orders/{order['id']}/close", token=m["api_key"])
    assert status == 200 and closed["status"] == "closed" and closed["metadata"] == {"d": [[[[1]]]]}
