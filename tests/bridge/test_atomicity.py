"""A failure at any step of ingest leaves nothing behind, no ack goes out, and a resend succeeds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.store.database import Tx
from bridge.store.sqlite import CHECKPOINT_EVERY_S, WRITER_AUTOCHECKPOINT, SqliteDatabase
from tests.harness import RunningBridge

CHECKPOINTS = ["ingest.deduped", "ingest.payment_recorded", "ingest.order_paid"]


class Crash(Exception):
    pass


async def _counts(bridge: RunningBridge) -> dict[str, int]:
    def op(tx: Tx) -> dict[str, int]:
        out = {}
        for table in ("payments", "reports", "fingerprints", "events", "deliveries"):
            row = tx.one(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 - fixed table names
            assert row is not None
            out[table] = int(row[0])
        return out

    return await bridge.ctx.db.read(op)


@pytest.mark.parametrize("checkpoint", CHECKPOINTS)
async def test_abort_between_steps_leaves_all_or_nothing(bridge: RunningBridge, checkpoint: str) -> None:
    """Aborting the ingest transaction at a checkpoint writes nothing and sends no ack; a resend commits once."""
    m = await bridge.merchant()
    key = m["api_key"]
    await bridge.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": "http://127.0.0.1:9/x"})
    device = await bridge.pair(key)
    await device.connect()
    order = await bridge.order(key, "9.00", notify_url="http://127.0.0.1:9/notify")
    before = await _counts(bridge)

    def fault(name: str) -> None:
        if name == checkpoint:
            raise Crash(name)

    bridge.ctx.db.fault = fault
    frame = device.report(amount_cents=order["pay_amount_cents"])
    await device.send(frame)
    with pytest.raises(asyncio.TimeoutError):
        await device.recv_type("ack", timeout=0.5)
    assert await _counts(bridge) == before
    _, fresh = await bridge.call("GET", f"/v1/orders/{order['id']}", token=key)
    assert fresh["status"] == "pending"

    bridge.ctx.db.fault = None
    await device.send(frame)
    ack = await device.recv_type("ack")
    assert ack["status"] == "accepted"
    after = await _counts(bridge)
    assert after["payments"] == before["payments"] + 1 and after["reports"] == before["reports"] + 1
    _, fresh = await bridge.call("GET", f"/v1/orders/{order['id']}", token=key)
    assert fresh["status"] == "paid"
    await device.close()


async def test_one_failing_job_does_not_spoil_the_batch(bridge: RunningBridge) -> None:
    """Group commit: a job that fails is rolled back alone while concurrent jobs in its batch commit."""
    db = bridge.ctx.db

    def good(tx: Tx) -> int:
        tx.execute(
            "INSERT INTO events (id, merchant_id, type, created_at, body) VALUES (?, 'm', 't', 0, '{}')",
            (f"evt_good_{id(tx)}",),
        )
        return 1

    def bad(tx: Tx) -> int:
        tx.execute("INSERT INTO events (id, merchant_id, type, created_at, body) VALUES ('evt_bad', 'm', 't', 0, '{}')")
        raise Crash("after a write")

    results = await asyncio.gather(db.write(good), db.write(bad), db.write(good), return_exceptions=True)
    assert results[0] == 1 and results[2] == 1 and isinstance(results[1], Crash)

    def ids(tx: Tx) -> list[str]:
        return [str(r[0]) for r in tx.all("SELECT id FROM events WHERE merchant_id = 'm'")]

    got = await db.read(ids)
    assert "evt_bad" not in got and len(got) == 2


async def test_a_broken_transaction_fails_the_batch_and_the_writer_lives_on(bridge: RunningBridge) -> None:
    """When the transaction itself breaks (as on a full disk), every job in the batch gets DatabaseUnavailable,
    nothing is committed, and later writes still work."""
    from bridge.errors import DatabaseUnavailable

    db = bridge.ctx.db

    def victim(tx: Tx) -> int:
        tx.execute("INSERT INTO events (id, merchant_id, type, created_at, body) VALUES ('evt_v', 'm', 't', 0, '{}')")
        return 1

    def breaker(tx: Tx) -> int:
        tx.execute("ROLLBACK")  # the engine aborting the transaction under us
        raise Crash("disk full")

    results = await asyncio.gather(db.write(victim), db.write(breaker), return_exceptions=True)
    assert all(isinstance(r, DatabaseUnavailable) for r in results), results

    def count(tx: Tx) -> int:
        row = tx.one("SELECT COUNT(*) FROM events WHERE id = 'evt_v'")
        assert row is not None
        return int(row[0])

    assert await db.read(count) == 0
    assert await db.write(victim) == 1 and await db.read(count) == 1


async def test_the_wal_is_checkpointed_off_the_writer(tmp_path: Path) -> None:
    """The writer checkpoints itself only past WRITER_AUTOCHECKPOINT pages (~40 MiB); the background
    checkpoints copy the WAL into the database file meanwhile, and everything reads back after a reopen."""
    db = SqliteDatabase(tmp_path / "c.db")
    await db.open()
    try:
        await db.write(lambda tx: tx.execute("CREATE TABLE blob (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        assert await db.write(lambda tx: tx.one("PRAGMA wal_autocheckpoint")[0]) == WRITER_AUTOCHECKPOINT
        for _ in range(60):  # ~60 x 200 KiB = 12 MiB through the WAL
            await db.write(lambda tx: tx.executemany("INSERT INTO blob (body) VALUES (?)", [("x" * 2000,)] * 100))
            await asyncio.sleep(0.02)

        await asyncio.sleep(CHECKPOINT_EVERY_S * 3)
        # 12 MiB is far below the writer's own threshold: only the background checkpoints copied it.
        assert (tmp_path / "c.db").stat().st_size > 10 * 1024 * 1024
    finally:
        await db.close()
    again = SqliteDatabase(tmp_path / "c.db")
    await again.open()
    try:
        assert await again.read(lambda tx: tx.one("SELECT COUNT(*) FROM blob")[0]) == 6000
    finally:
        await again.close()
