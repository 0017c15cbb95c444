"""The device websocket refuses everything but a correct auth, with documented close codes."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.harness import RunningBridge, TestDevice, make_settings, running_bridge


async def _closed_with(device: TestDevice) -> tuple[int | None, str | None]:
    """Read until the server closes; return (close code, last error code seen)."""
    error = None
    try:
        while True:
            frame = json.loads(await asyncio.wait_for(device.ws.recv(), 5))
            if frame.get("type") == "error":
                error = frame["code"]
    except websockets.ConnectionClosed as e:
        return (e.rcvd.code if e.rcvd else None), error


@pytest.fixture
async def paired(bridge: RunningBridge) -> tuple[RunningBridge, dict[str, str], TestDevice]:
    m = await bridge.merchant()
    return bridge, m, await bridge.pair(m["api_key"])


async def test_bad_signature_closes_4401(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """A signature by a key that is not the device's is refused with 4401."""
    _, _, device = paired
    challenge = await device.open()
    await device.send(device.auth_frame(challenge["nonce"], key=Ed25519PrivateKey.generate()))
    assert await _closed_with(device) == (4401, "auth_failed")


async def test_another_devices_key_is_refused(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """Device B's valid signature presented as device A is refused."""
    bridge, m, a = paired
    b = await bridge.pair(m["api_key"], "b")
    challenge = await a.open()
    await a.send(a.auth_frame(challenge["nonce"], device_id=a.device_id, key=b.key))
    assert await _closed_with(a) == (4401, "auth_failed")


async def test_replayed_auth_frame_is_refused(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """An auth frame captured from one connection does not authenticate another (nonces are per connection)."""
    _, _, device = paired
    challenge = await device.open()
    captured = device.auth_frame(challenge["nonce"])
    await device.send(captured)
    assert (await device.recv())["type"] == "auth_ok"
    await device.close()
    other = TestDevice(device.ws_url, key=device.key, device_id=device.device_id)
    await other.open()
    await other.send(captured)
    assert await _closed_with(other) == (4401, "auth_failed")


async def test_clock_skew_over_five_minutes(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """A timestamp six minutes off is refused even with a valid signature."""
    _, _, device = paired
    challenge = await device.open()
    await device.send(device.auth_frame(challenge["nonce"], timestamp=int(time.time() * 1000) - 6 * 60_000))
    assert await _closed_with(device) == (4401, "auth_failed")


async def test_report_before_auth(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """Anything but auth before auth_ok is refused with 4401."""
    _, _, device = paired
    await device.open()
    await device.send(device.report(amount_cents=100))
    assert await _closed_with(device) == (4401, "auth_failed")


async def test_unknown_device(bridge: RunningBridge) -> None:
    """An unpaired key and id are refused."""
    stranger = TestDevice(bridge.ws_url, device_id="dev_00000000000000000000")
    challenge = await stranger.open()
    await stranger.send(stranger.auth_frame(challenge["nonce"]))
    assert await _closed_with(stranger) == (4401, "auth_failed")


async def test_malformed_and_binary_frames(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """Invalid JSON after auth closes 4400; a binary frame closes 4400."""
    _, _, device = paired
    await device.connect()
    await device.ws.send("{not json")
    assert await _closed_with(device) == (4400, "bad_frame")
    await device.connect()
    await device.ws.send(b"\x00\x01")
    assert await _closed_with(device) == (4400, "bad_frame")


async def test_unknown_type_closes_4404(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """An unknown message type after auth is refused with 4404."""
    _, _, device = paired
    await device.connect()
    await device.send({"type": "gimme_money"})
    assert await _closed_with(device) == (4404, "unknown_type")


async def test_oversized_frame_closes_1009(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """A frame over 64 KiB closes the connection with 1009 and the bridge keeps serving others."""
    bridge, m, device = paired
    await device.connect()
    await device.ws.send("x" * (64 * 1024 + 10))
    code, _ = await _closed_with(device)
    assert code == 1009
    other = await bridge.pair(m["api_key"], "other")
    await other.connect()
    assert (await other.pay(100))["status"] == "accepted"
    await other.close()


async def test_auth_timeout(bridge: RunningBridge) -> None:
    """A connection that never authenticates is closed with 4408."""
    data = Path(str(bridge.ctx.settings.data_dir) + "-timeout")
    async with running_bridge(replace(make_settings(data), auth_timeout=0.3)) as quick:
        device = TestDevice(quick.ws_url)
        await device.open()
        assert await _closed_with(device) == (4408, "auth_timeout")


async def test_flood_is_cut_off_and_others_unaffected(tmp_path: Path) -> None:
    """A device sending frames faster than allowed is closed with 4429; another device keeps working."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), device_max_frames_per_second=20)) as b:
        m = await b.merchant()
        flooder = await b.pair(m["api_key"], "flood")
        calm = await b.pair(m["api_key"], "calm")
        await flooder.connect()
        await calm.connect()
        for _ in range(200):
            try:
                await flooder.send({"type": "heartbeat"})
            except websockets.ConnectionClosed:
                break
        code, _ = await _closed_with(flooder)
        assert code in (4429, 4400)  # rate limit, or the first malformed heartbeat, whichever is read first
        assert (await calm.pay(100))["status"] == "accepted"
        await calm.close()


async def test_rate_limit_closes_4429(tmp_path: Path) -> None:
    """Valid heartbeats beyond the per-second frame budget are refused with 4429."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), device_max_frames_per_second=5)) as b:
        m = await b.merchant()
        device = await b.pair(m["api_key"])
        await device.connect()
        hb = {"type": "heartbeat", "sent_at": 1, "listener": {"ok": True}, "outbox_depth": 0}
        for _ in range(30):
            try:
                await device.send(hb)
            except websockets.ConnectionClosed:
                break
        code, error = await _closed_with(device)
        assert (code, error) == (4429, "rate_limited")


async def test_revoked_device_is_closed_within_a_second_and_refused_later(
    paired: tuple[RunningBridge, dict[str, str], TestDevice],
) -> None:
    """Revoking closes an open connection with 4403 promptly; a later connect is refused with 4403."""
    bridge, m, device = paired
    await device.connect()
    status, body = await bridge.call("DELETE", f"/v1/devices/{device.device_id}", token=m["api_key"])
    assert status == 200 and body["revoked"] is True
    started = time.monotonic()
    code, error = await _closed_with(device)
    assert (code, error) == (4403, "device_revoked")
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"closed after {elapsed:.2f}s"
    again = TestDevice(device.ws_url, key=device.key, device_id=device.device_id)
    challenge = await again.open()
    await again.send(again.auth_frame(challenge["nonce"]))
    assert await _closed_with(again) == (4403, "device_revoked")


async def test_second_connection_replaces_first(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """The same device connecting again closes the older connection with 4409."""
    _, _, device = paired
    await device.connect()
    first = device.ws
    second = TestDevice(device.ws_url, key=device.key, device_id=device.device_id)
    await second.connect()
    device.ws = first
    assert await _closed_with(device) == (4409, "replaced")
    assert (await second.pay(100))["status"] == "accepted"
    await second.close()


async def test_invalid_utf8_text_frame_closes_1007(paired: tuple[RunningBridge, dict[str, str], TestDevice]) -> None:
    """A text frame that is not UTF-8 closes the connection with 1007 and other devices keep working."""
    bridge, m, device = paired
    await device.connect()
    # websockets refuses to send invalid UTF-8 as text, so write the raw masked frame ourselves.
    payload = b'{"type": "\xff\xfe"}'
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    device.ws.transport.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    code, _ = await _closed_with(device)
    assert code == 1007
    other = await bridge.pair(m["api_key"], "other")
    await other.connect()
    assert (await other.pay(100))["status"] == "accepted"
    await other.close()
