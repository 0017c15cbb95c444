"""Device status on one SQLite bridge with its instance bookkeeping: a run killed with SIGKILL leaves its
phones "online" in the file; the next start marks them offline once (instance_gone), and they come back
online when they reconnect."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.harness import RunningBridge, eventually, make_settings, running_bridge, serve_process


async def _device(bridge: RunningBridge, key: str, device_id: str) -> dict[str, Any]:
    status, d = await bridge.call("GET", f"/v1/devices/{device_id}", token=key)
    assert status == 200, d
    return dict(d)


async def test_a_restart_after_sigkill_marks_the_killed_runs_phones_offline_once(tmp_path: Path) -> None:
    """A phone connected to a `paybridge serve` that is killed stays "online" in the file; the next
    start (same SQLite file) marks it offline with instance_gone and one device.offline, and it is
    online again once it reconnects."""
    data_dir = tmp_path / "data"
    settings = make_settings(data_dir, database_url=f"sqlite:///{data_dir / 'paybridge.db'}")
    async with running_bridge(settings) as b:  # creates the merchant and pairs the phone
        key = (await b.merchant())["api_key"]
        phone = await b.pair(key)
    proc, url = await asyncio.to_thread(serve_process, data_dir)
    try:
        phone.ws_url = url.replace("http://", "ws://") + "/v1/devices/connect"
        await phone.connect()
        await phone.heartbeat()  # the bridge has marked it online before it answers a heartbeat
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    await phone.close()
    async with running_bridge(settings) as b:
        d = await _device(b, key, phone.device_id)
        assert d["status"] == "offline" and d["status_reasons"] == ["instance_gone"] and d["connected"] is False
        _, page = await b.call("GET", "/v1/events", token=key)
        assert [e["type"] for e in page["data"]] == ["device.online", "device.offline"]
        phone.ws_url = b.ws_url
        await phone.connect()
        await eventually(lambda: _device(b, key, phone.device_id), lambda d: d["status"] == "online")
        await phone.close()
