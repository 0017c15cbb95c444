"""Legitimate devices keep working while others abuse the device channel; the latency is measured and printed.

Speed is not asserted (that lives in figures, docs/reliability.md): the test asserts that every
legitimate report is acked `accepted` while attackers send forged auths, oversized and malformed
frames and floods, and that each attacker is cut off with its documented close code.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.harness import RunningBridge, TestDevice, make_settings, running_bridge

REPORTS = 200


async def _legit_latencies(device: TestDevice) -> list[float]:
    out = []
    for _ in range(REPORTS):
        t0 = time.perf_counter()
        ack = await device.pay(123)
        out.append((time.perf_counter() - t0) * 1000)
        assert ack["status"] == "accepted"
        await asyncio.sleep(0.01)  # a busy shop: ~100 reports/s, well under the per-device frame budget
    return out


async def _attacker(bridge: RunningBridge, victim: TestDevice, kind: str, stop: asyncio.Event) -> list[int]:
    """Keep attacking until told to stop; return the close codes received."""
    codes: list[int] = []
    while not stop.is_set():
        try:
            async with websockets.connect(bridge.ws_url, max_size=2**20) as ws:
                challenge = json.loads(await ws.recv())
                if kind == "forged":
                    forged = TestDevice(bridge.ws_url, key=Ed25519PrivateKey.generate(), device_id=victim.device_id)
                    await ws.send(json.dumps(forged.auth_frame(challenge["nonce"])))
                elif kind == "oversized":
                    await ws.send("x" * (70 * 1024))
                elif kind == "garbage":
                    await ws.send("\x00{not json")
                elif kind == "before_auth":
                    await ws.send(json.dumps(victim.report(amount_cents=1)))
                await ws.recv()
                await ws.recv()
        except websockets.ConnectionClosed as e:
            if e.rcvd is not None:
                codes.append(e.rcvd.code)
        except (OSError, TimeoutError):
            pass
    return codes


async def test_legitimate_latency_under_abuse(tmp_path: Path) -> None:
    """Forged signatures, oversized and malformed frames and a flooding device are each refused with their
    documented code while a legitimate device's reports all go through; latency with and without is printed."""
    settings = replace(make_settings(tmp_path / "d"), device_max_frames_per_second=200, log_level="error")
    async with running_bridge(settings) as b:
        m = await b.merchant()
        legit = await b.pair(m["api_key"], "legit")
        flooder = await b.pair(m["api_key"], "flooder")
        await legit.connect()
        quiet = await _legit_latencies(legit)

        stop = asyncio.Event()
        attackers = [
            asyncio.create_task(_attacker(b, legit, k, stop))
            for k in ("forged", "oversized", "garbage", "before_auth")
            for _ in range(2)
        ]
        await flooder.connect()

        async def flood() -> int | None:
            hb = {"type": "heartbeat", "sent_at": 1, "listener": {"ok": True}, "outbox_depth": 0}
            try:
                while True:
                    await flooder.send(hb)
                    await asyncio.sleep(0)
            except websockets.ConnectionClosed as e:
                # The flooder may be mid-send when the close frame arrives: take it from the error or the socket.
                if e.rcvd is not None:
                    return e.rcvd.code
                await asyncio.sleep(0.5)
                return flooder.ws.close_code  # type: ignore[no-any-return]

        flood_task = asyncio.create_task(flood())
        await asyncio.sleep(0.2)
        loud = await _legit_latencies(legit)
        stop.set()
        codes = [c for t in attackers for c in await t]
        flood_code = await asyncio.wait_for(flood_task, 10)
        await legit.close()

    def pct(xs: list[float], p: float) -> float:
        return round(sorted(xs)[int(len(xs) * p)], 2)

    print(
        "\nABUSE "
        + json.dumps(
            {
                "legit_reports": 2 * REPORTS,
                "attacker_connections_refused": len(codes),
                "close_codes": sorted(set(codes)),
                "flood_close_code": flood_code,
                "quiet_p50_ms": pct(quiet, 0.5),
                "quiet_p99_ms": pct(quiet, 0.99),
                "under_abuse_p50_ms": pct(loud, 0.5),
                "under_abuse_p99_ms": pct(loud, 0.99),
                "under_abuse_mean_ms": round(statistics.mean(loud), 2),
            }
        )
    )
    # A flooder that never stops sending may not read the close frame before the socket goes (1006);
    # tests/bridge/test_device_ws.py checks the exact 4429 with a burst. Either way it is cut off.
    assert flood_code in (4429, 1006)
    assert set(codes) <= {4401, 4400, 1009, 4408} and {4401, 1009}.issubset(set(codes))
