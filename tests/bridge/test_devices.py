"""Pairing, device status from heartbeats and connections, device.* events, admin views."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from bridge.store.database import Tx
from bridge.web.keys import HUB
from tests.harness import ADMIN_TOKEN, RunningBridge, TestDevice, make_settings, running_bridge


async def _device(bridge: RunningBridge, key: str, device_id: str) -> dict[str, Any]:
    status, body = await bridge.call("GET", f"/v1/devices/{device_id}", token=key)
    assert status == 200
    return dict(body)


async def _event_types(bridge: RunningBridge) -> list[str]:
    def op(tx: Tx) -> list[str]:
        return [str(r[0]) for r in tx.all("SELECT type FROM events ORDER BY seq")]

    return await bridge.ctx.db.read(op)


async def _wait_status(bridge: RunningBridge, key: str, device_id: str, want: str) -> dict[str, Any]:
    for _ in range(100):
        d = await _device(bridge, key, device_id)
        if d["status"] == want:
            return d
        await asyncio.sleep(0.02)
    raise AssertionError(f"device never became {want}: {d}")


async def test_pairing_code_shape_and_single_use(bridge: RunningBridge) -> None:
    """A pairing code is 8 Crockford characters with a pair_url, and works exactly once."""
    m = await bridge.merchant()
    status, code = await bridge.call("POST", "/v1/pairing-codes", token=m["api_key"])
    assert status == 201 and len(code["code"]) == 8 and code["pair_url"].startswith("paybridge://pair?server=")
    assert f"code={code['code']}" in code["pair_url"]
    dev = TestDevice(bridge.ws_url)
    body = {"code": code["code"].lower(), "public_key": dev.public_key_b64, "name": "p"}
    s1, out1 = await bridge.call("POST", "/v1/devices/pair", json_body=body)
    s2, out2 = await bridge.call("POST", "/v1/devices/pair", json_body=body)
    assert s1 == 201 and out1["device_id"].startswith("dev_")
    assert s2 == 404 and out2["error"]["code"] == "invalid_pairing_code"


async def test_pairing_validates_the_key(bridge: RunningBridge) -> None:
    """A public key that is not 32 raw bytes of base64 is refused with 400."""
    m = await bridge.merchant()
    _, code = await bridge.call("POST", "/v1/pairing-codes", token=m["api_key"])
    status, out = await bridge.call("POST", "/v1/devices/pair", json_body={
        "code": code["code"], "public_key": "AAAA", "name": "p"})
    assert status == 400 and out["error"]["code"] == "invalid_public_key"


async def test_expired_pairing_code(bridge: RunningBridge) -> None:
    """A code older than 10 minutes is refused."""
    m = await bridge.merchant()
    _, code = await bridge.call("POST", "/v1/pairing-codes", token=m["api_key"])
    bridge.ctx.clock.offset_ms = 11 * 60 * 1000  # type: ignore[attr-defined]
    dev = TestDevice(bridge.ws_url)
    status, out = await bridge.call("POST", "/v1/devices/pair", json_body={
        "code": code["code"], "public_key": dev.public_key_b64, "name": "p"})
    assert status == 404 and out["error"]["code"] == "invalid_pairing_code"


async def test_pairing_guessing_is_rate_limited(bridge: RunningBridge) -> None:
    """Guessing codes from one address hits 429 with Retry-After after the allowed attempts."""
    dev = TestDevice(bridge.ws_url)
    statuses = []
    for i in range(15):
        status, _ = await bridge.call("POST", "/v1/devices/pair", json_body={
            "code": f"ZZZZZZ{i:02d}", "public_key": dev.public_key_b64, "name": "p"})
        statuses.append(status)
    assert statuses[:10] == [404] * 10 and set(statuses[10:]) == {429}


async def _guesses(bridge: RunningBridge, forwarded_for: list[str]) -> list[int]:
    dev = TestDevice(bridge.ws_url)
    statuses = []
    for i, xff in enumerate(forwarded_for):
        status, _ = await bridge.call(
            "POST",
            "/v1/devices/pair",
            json_body={"code": f"ZZZZZZ{i:02d}", "public_key": dev.public_key_b64, "name": "p"},
            headers={"X-Forwarded-For": xff},
        )
        statuses.append(status)
    return statuses


async def test_behind_a_trusted_proxy_each_client_network_has_its_own_pairing_budget(tmp_path: Path) -> None:
    """With the loopback proxy trusted, guesses are counted per forwarded client network: one network
    runs out after its 3 attempts while another still has its own; a spoofed entry left of the proxy's
    own does not buy a fresh budget."""
    settings = make_settings(tmp_path, trusted_proxies="127.0.0.1, ::1", pairing_attempts_per_minute=3)
    async with running_bridge(settings) as bridge:
        first = await _guesses(bridge, ["198.51.100.7"] * 4)
        spoofed = await _guesses(bridge, [f"203.0.{i}.1, 198.51.100.8" for i in range(2)])
        other = await _guesses(bridge, ["192.0.2.1"] * 3)
    assert first == [404, 404, 404, 429]
    assert spoofed == [429, 429]  # still 198.51.100.0/24: the proxy appended the real address
    assert other == [404, 404, 404]


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(tmp_path: Path) -> None:
    """By default a client cannot pick its rate-limit key: varying X-Forwarded-For still counts as one client."""
    async with running_bridge(make_settings(tmp_path, pairing_attempts_per_minute=3)) as bridge:
        statuses = await _guesses(bridge, [f"198.51.{i}.7" for i in range(5)])
    assert statuses == [404, 404, 404, 429, 429]


async def test_status_follows_connection_and_heartbeats(bridge: RunningBridge) -> None:
    """Connecting makes a device online, a broken listener or low battery degraded, disconnecting offline,
    and each change raises a device.* event."""
    m = await bridge.merchant()
    key = m["api_key"]
    device = await bridge.pair(key)
    assert (await _device(bridge, key, device.device_id))["status"] == "offline"
    await device.connect()
    d = await _wait_status(bridge, key, device.device_id, "online")
    assert d["connected"] is True and d["connected_since"] is not None
    _, order = await bridge.call("POST", "/v1/orders", token=key, json_body={
        "merchant_order_id": "w", "amount": "1.00", "channel": "alipay"})
    assert "warnings" not in order
    await device.heartbeat(listener={"ok": False, "source": "termux", "error": "timeout"},
                           battery={"level": 9, "charging": False})
    d = await _device(bridge, key, device.device_id)
    assert d["status"] == "degraded" and set(d["status_reasons"]) == {"listener_not_working", "battery_low"}
    assert d["last_heartbeat"]["battery"] == {"level": 9, "charging": False}
    await device.heartbeat(outbox_depth=500)
    d = await _device(bridge, key, device.device_id)
    assert d["status"] == "degraded" and d["status_reasons"] == ["outbox_backlog"]
    await device.heartbeat()
    assert (await _device(bridge, key, device.device_id))["status"] == "online"
    await device.close()
    await _wait_status(bridge, key, device.device_id, "offline")
    assert await _event_types(bridge) == [
        "device.online", "device.degraded", "device.online", "device.offline"]


async def test_silent_device_goes_offline(tmp_path: Path) -> None:
    """A connected device that stops heartbeating is marked offline (no_heartbeat) and disconnected."""
    settings = replace(make_settings(tmp_path / "d"), heartbeat_timeout=0)
    async with running_bridge(settings) as b:
        m = await b.merchant()
        device = await b.pair(m["api_key"])
        await device.connect()
        await _wait_status(b, m["api_key"], device.device_id, "online")
        # The monitor runs every 5 s; drive it faster here, with the clock moved past the timeout.
        b.ctx.clock.offset_ms = 1000  # type: ignore[attr-defined]
        monitor = asyncio.create_task(b.app[HUB].monitor(interval=0.01))
        await _wait_status(b, m["api_key"], device.device_id, "offline")
        monitor.cancel()


async def test_admin_sees_all_devices_merchant_only_own(bridge: RunningBridge) -> None:
    """GET /v1/devices: the admin sees every merchant's devices, a merchant only its own; others get 404."""
    a = await bridge.merchant("a")
    b = await bridge.merchant("b")
    da = await bridge.pair(a["api_key"])
    await bridge.pair(b["api_key"])
    _, admin_view = await bridge.call("GET", "/v1/devices", token=ADMIN_TOKEN)
    _, a_view = await bridge.call("GET", "/v1/devices", token=a["api_key"])
    assert len(admin_view["data"]) == 2 and [d["id"] for d in a_view["data"]] == [da.device_id]
    status, _ = await bridge.call("GET", f"/v1/devices/{da.device_id}", token=b["api_key"])
    assert status == 404
    status, _ = await bridge.call("DELETE", f"/v1/devices/{da.device_id}", token=b["api_key"])
    assert status == 404


async def test_health_and_metrics(bridge: RunningBridge) -> None:
    """/healthz answers ok; /metrics (admin) exposes report and device counters in Prometheus format."""
    status, health = await bridge.call("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    await device.pay(100)
    status, text = await bridge.call("GET", "/metrics", token=ADMIN_TOKEN)
    assert status == 200
    assert 'paybridge_reports_total{outcome="accepted"} 1.0' in text
    assert "paybridge_connected_devices 1.0" in text
    status, _ = await bridge.call("GET", "/metrics")
    assert status == 401
    await device.close()


async def test_reports_today_counts_and_resets_next_day(bridge: RunningBridge) -> None:
    """reports_today counts today's reports and shows 0 once the (UTC) day has changed."""
    m = await bridge.merchant()
    device = await bridge.pair(m["api_key"])
    await device.connect()
    await device.pay(101)
    await device.pay(102)
    d = await _device(bridge, m["api_key"], device.device_id)
    assert d["reports_today"] == 2 and d["last_report_at"] is not None
    bridge.ctx.clock.offset_ms = 24 * 3600 * 1000  # type: ignore[attr-defined]
    assert (await _device(bridge, m["api_key"], device.device_id))["reports_today"] == 0
    await device.close()


async def test_pair_url_names_the_bound_port(bridge: RunningBridge) -> None:
    """A bridge started on port 0 puts the port it actually bound into pair_url, so the QR code works."""
    from urllib.parse import parse_qs, urlsplit

    m = await bridge.merchant()
    _, code = await bridge.call("POST", "/v1/pairing-codes", token=m["api_key"])
    server = parse_qs(urlsplit(code["pair_url"]).query)["server"][0]
    assert server == bridge.base_url and not server.endswith(":0")
