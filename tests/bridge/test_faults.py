"""Faults at the storage and time seams: a locked database, a full disk, a clock that jumps."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.store.database import Tx
from tests import pg
from tests.harness import RunningBridge, make_settings, running_bridge

# A SQLite file's own faults (its lock, its disk); PostgreSQL's are in test_store_backends.py.
sqlite_only = pytest.mark.skipif(pg.e2e_on_postgres(), reason="SQLite's own faults")


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@sqlite_only
async def test_locked_database_gives_503_and_recovers(tmp_path: Path) -> None:
    """While another process holds the write lock, writes fail with 503 database_unavailable; then they work."""
    async with running_bridge(replace(make_settings(tmp_path / "d"), sqlite_busy_timeout=200)) as b:
        m = await b.merchant()
        other = sqlite3.connect(b.ctx.settings.database_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            status, out = await b.call(
                "POST",
                "/v1/orders",
                token=m["api_key"],
                json_body={"merchant_order_id": "busy", "amount": "1.00", "channel": "alipay"},
            )
            assert status == 503 and out["error"]["code"] == "database_unavailable"
        finally:
            other.execute("ROLLBACK")
            other.close()
        status, out = await b.call(
            "POST",
            "/v1/orders",
            token=m["api_key"],
            json_body={"merchant_order_id": "busy", "amount": "1.00", "channel": "alipay"},
        )
        assert status == 201


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=10)


@sqlite_only
async def test_full_disk_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """On a full disk reports are not acked and orders get 503; after space is freed the resent reports
    commit exactly once and the database is intact."""
    with small_tmpfs(tmp_path / "fs", "16m") as fs:
        async with running_bridge(make_settings(fs / "data")) as b:
            m = await b.merchant()
            device = await b.pair(m["api_key"])
            await device.connect()
            filler = fs / "filler"
            with contextlib.suppress(OSError), filler.open("wb") as f:  # fill the disk to the last byte
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
            frames = [device.report(amount_cents=100 + i, text="x" * 3000) for i in range(40)]
            acked: set[str] = set()
            for frame in frames:
                await device.send(frame)
            with contextlib.suppress(asyncio.TimeoutError):
                while True:
                    ack = await device.recv_type("ack", timeout=1.0)
                    acked.add(ack["event_id"])
            assert len(acked) < len(frames), "the disk never filled up"
            status, out = await b.call(
                "POST",
                "/v1/orders",
                token=m["api_key"],
                json_body={"merchant_order_id": "full", "amount": "1.00", "channel": "alipay"},
            )
            assert status == 503 and out["error"]["code"] == "database_unavailable"
            filler.unlink()
            for frame in frames:  # the agent resends everything not acked; acked ones come back duplicate
                if frame["event_id"] not in acked:
                    await device.send(frame)
                    got = await device.recv(timeout=5)
                    assert got.get("status") == "accepted", got

            def count(tx: Tx) -> int:
                row = tx.one("SELECT COUNT(*) FROM payments")
                assert row is not None
                return int(row[0])

            assert await b.ctx.db.read(count) == len(frames)
            await device.close()
        assert _integrity(fs / "data" / "paybridge.db") == "ok"


async def test_clock_jumps(bridge: RunningBridge) -> None:
    """A forward jump expires due orders once each; a backward jump changes nothing; a device whose clock is
    now far off is refused with a clear skew message."""
    m = await bridge.merchant()
    orders = [await bridge.order(m["api_key"], "2.00") for _ in range(3)]
    bridge.ctx.clock.offset_ms = 2 * 3600 * 1000  # type: ignore[attr-defined]
    for _ in range(100):
        _, page = await bridge.call("GET", "/v1/orders?status=expired", token=m["api_key"])
        if len(page["data"]) == 3:
            break
        await asyncio.sleep(0.05)
    assert {o["id"] for o in page["data"]} == {o["id"] for o in orders}
    bridge.ctx.clock.offset_ms = -2 * 3600 * 1000  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)

    def expired_events(tx: Tx) -> int:
        row = tx.one("SELECT COUNT(*) FROM events WHERE type = 'order.expired'")
        assert row is not None
        return int(row[0])

    assert await bridge.ctx.db.read(expired_events) == 3
    _, page = await bridge.call("GET", "/v1/orders?status=expired", token=m["api_key"])
    assert len(page["data"]) == 3
    device = await bridge.pair(m["api_key"])
    challenge = await device.open()
    await device.send(device.auth_frame(challenge["nonce"]))
    frame = await device.recv()
    assert frame["type"] == "error" and frame["code"] == "auth_failed" and "clock" in frame["message"]
