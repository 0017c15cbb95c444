"""HTTP abuse: no credentials, wrong keys, other merchants' objects, slow clients, hostile strings."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from tests.harness import ADMIN_TOKEN, RunningBridge, make_settings, running_bridge

# Every merchant route with a placeholder id; each must refuse without valid credentials.
ROUTES = [
    ("POST", "/v1/merchants"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/orders"),
    ("GET", "/v1/orders/ord_x"),
    ("POST", "/v1/orders/ord_x/close"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/pay_x"),
    ("POST", "/v1/payments/pay_x/match"),
    ("POST", "/v1/payments/pay_x/ignore"),
    ("POST", "/v1/accounts"),
    ("GET", "/v1/accounts"),
    ("POST", "/v1/accounts/acc_x/devices"),
    ("POST", "/v1/pairing-codes"),
    ("GET", "/v1/devices"),
    ("GET", "/v1/devices/dev_x"),
    ("DELETE", "/v1/devices/dev_x"),
    ("GET", "/metrics"),
    ("GET", "/v1/me"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_missing_and_wrong_credentials(bridge: RunningBridge, method: str, path: str) -> None:
    """Without a token, or with a wrong one, every route answers 401 with a JSON error and no data."""
    for token in (None, "pbk_not_a_real_key", "Bearer"):
        status, body = await bridge.call(method, path, token=token, json_body={})
        assert status == 401, (method, path, token, body)
        assert set(body) == {"error"} and body["error"]["code"] == "unauthorized"


async def test_merchant_key_is_not_admin(bridge: RunningBridge) -> None:
    """A merchant key cannot create merchants or read metrics."""
    m = await bridge.merchant()
    status, _ = await bridge.call("POST", "/v1/merchants", token=m["api_key"], json_body={"name": "x"})
    assert status == 401
    status, _ = await bridge.call("GET", "/metrics", token=m["api_key"])
    assert status == 401


async def test_other_merchants_objects_are_404(bridge: RunningBridge) -> None:
    """Merchant B gets 404 on A's orders, payments, devices and accounts, and sees none of them in lists."""
    a = await bridge.merchant("a")
    b = await bridge.merchant("b")
    ka, kb = a["api_key"], b["api_key"]
    device = await bridge.pair(ka)
    await device.connect()
    order = await bridge.order(ka, "3.00")
    ack = await device.pay(1)  # unmatched payment of A
    _, acc = await bridge.call("POST", "/v1/accounts", token=ka, json_body={"channel": "alipay", "name": "A"})
    for method, path, body in [
        ("GET", f"/v1/orders/{order['id']}", None),
        ("POST", f"/v1/orders/{order['id']}/close", None),
        ("GET", f"/v1/payments/{ack['payment_id']}", None),
        ("POST", f"/v1/payments/{ack['payment_id']}/ignore", None),
        ("POST", f"/v1/payments/{ack['payment_id']}/match", {"order_id": order["id"]}),
        ("GET", f"/v1/devices/{device.device_id}", None),
        ("DELETE", f"/v1/devices/{device.device_id}", None),
        ("POST", f"/v1/accounts/{acc['id']}/devices", {"device_id": device.device_id}),
    ]:
        status, out = await bridge.call(method, path, token=kb, json_body=body)
        assert status == 404 and out["error"]["code"] == "not_found", (method, path, out)
    for path in ("/v1/orders", "/v1/payments", "/v1/devices", "/v1/accounts"):
        status, out = await bridge.call("GET", path, token=kb)
        assert status == 200 and out["data"] == [], path
    # and A's objects are untouched
    _, fresh = await bridge.call("GET", f"/v1/orders/{order['id']}", token=ka)
    assert fresh["status"] == "pending"
    await device.close()


async def test_hostile_strings_are_stored_verbatim(bridge: RunningBridge) -> None:
    """SQL and HTML metacharacters in fields are stored and returned verbatim, never executed."""
    m = await bridge.merchant()
    evil = "x'); DROP TABLE orders; -- <script>alert(1)</script>"
    order = await bridge.order(m["api_key"], "1.00", merchant_order_id=evil, metadata={"note": evil})
    _, fresh = await bridge.call("GET", f"/v1/orders/{order['id']}", token=m["api_key"])
    assert fresh["merchant_order_id"] == evil and fresh["metadata"]["note"] == evil
    _, page = await bridge.call("GET", "/v1/orders", token=m["api_key"])
    assert len(page["data"]) == 1


async def test_control_characters_and_long_ids_are_refused(bridge: RunningBridge) -> None:
    """Control characters and over-long strings in fields are 400 invalid_field."""
    m = await bridge.merchant()
    for moid in ("a\x00b", "x" * 129):
        status, out = await bridge.call(
            "POST",
            "/v1/orders",
            token=m["api_key"],
            json_body={"merchant_order_id": moid, "amount": "1.00", "channel": "alipay"},
        )
        assert status == 400 and out["error"]["code"] == "invalid_field"


async def test_non_utf8_body(bridge: RunningBridge) -> None:
    """A body that is not UTF-8 is 400 invalid_json."""
    m = await bridge.merchant()
    status, out = await bridge.call("POST", "/v1/orders", token=m["api_key"], data=b'{"a": "\xff\xfe"}')
    assert status == 400 and out["error"]["code"] == "invalid_json"


async def _raw(port: int, payload: bytes, wait: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), wait)
    finally:
        writer.close()


async def test_slow_headers_are_cut_off(tmp_path: Path) -> None:
    """A client that never finishes its headers is disconnected after the header timeout."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), header_timeout=0.5)) as b:
        port = int(b.base_url.rsplit(":", 1)[1])
        got = await _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait=5)
        assert got == b""  # closed without a response; a complete request still works:
        status, _ = await b.call("GET", "/healthz")
        assert status == 200


async def test_slow_body_gets_408(tmp_path: Path) -> None:
    """A body that stops arriving is answered 408 request_timeout after the body timeout."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), body_timeout=0.5)) as b:
        m = await b.merchant()
        port = int(b.base_url.rsplit(":", 1)[1])
        head = (
            f"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {m['api_key']}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"merchant'
        ).encode()
        got = await _raw(port, head, wait=5)
        assert got.startswith(b"HTTP/1.1 408") and b"request_timeout" in got


async def test_declared_oversized_body_is_refused_before_reading(bridge: RunningBridge) -> None:
    """A Content-Length over 64 KiB is refused with 413 without waiting for the body."""
    port = int(bridge.base_url.rsplit(":", 1)[1])
    got = await _raw(
        port,
        (
            f"POST /v1/merchants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
            "Content-Length: 10000000\r\n\r\n"
        ).encode(),
        wait=5,
    )
    assert got.startswith(b"HTTP/1.1 413")


async def test_openapi_document_lists_the_routes(bridge: RunningBridge) -> None:
    """/v1/openapi.json is an OpenAPI 3.1 document naming the order and device routes."""
    status, doc = await bridge.call("GET", "/v1/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1")
    assert {"/v1/orders", "/v1/orders/{id}", "/v1/devices/pair"} <= set(doc["paths"])


async def test_me_names_the_keys_merchant(bridge: RunningBridge) -> None:
    """GET /v1/me returns the merchant the API key belongs to, and 401 without one."""
    m = await bridge.merchant("me-shop")
    status, out = await bridge.call("GET", "/v1/me", token=m["api_key"])
    assert status == 200 and (out["id"], out["name"]) == (m["id"], "me-shop")
    status, _ = await bridge.call("GET", "/v1/me")
    assert status == 401
