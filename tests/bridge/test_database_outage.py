"""A database that cannot take a write answers 503 with a stable code, and nothing half-done stays behind.

The store raises `DatabaseUnavailable` (a store error, not an HTTP one); the web middleware maps it.
The lock is taken by another real connection: SQLite's write lock, PostgreSQL's table lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from tests import pg
from tests.harness import RunningBridge, make_settings, running_bridge


async def _order(bridge: RunningBridge, key: str, merchant_order_id: str) -> tuple[int, Any]:
    body = {"merchant_order_id": merchant_order_id, "amount": "10.00", "channel": "alipay"}
    return await bridge.call("POST", "/v1/orders", token=key, json_body=body)


async def _outage_then_recovery(bridge: RunningBridge, key: str, hold: Any, release: Any) -> None:
    hold()
    try:
        status, body = await _order(bridge, key, "during-outage")
    finally:
        release()
    assert status == 503, body
    assert body["error"]["code"] == "database_unavailable"
    status, body = await _order(bridge, key, "during-outage")  # the same request again: now it is made, once
    assert status == 201, body
    status, page = await bridge.call("GET", "/v1/orders?limit=10", token=key)
    assert status == 200 and [o["merchant_order_id"] for o in page["data"]] == ["during-outage"]


async def test_a_locked_sqlite_database_answers_503_and_the_retry_succeeds(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock past the busy timeout: 503, no order; the retry makes it."""
    settings = make_settings(tmp_path, sqlite_busy_timeout=200)
    async with running_bridge(settings) as bridge:
        key = (await bridge.merchant())["api_key"]
        other = sqlite3.connect(settings.database_path, isolation_level=None)
        try:
            await _outage_then_recovery(
                bridge, key, lambda: other.execute("BEGIN IMMEDIATE"), lambda: other.execute("ROLLBACK")
            )
        finally:
            other.close()


async def test_a_locked_postgresql_table_answers_503_and_the_retry_succeeds(tmp_path: Path) -> None:
    """Another session holds the orders table past lock_timeout: 503, no order; the retry makes it."""
    url = pg.fresh_database()
    async with running_bridge(make_settings(tmp_path, database_url=url, pg_lock_timeout=0.3)) as bridge:
        key = (await bridge.merchant())["api_key"]
        with psycopg.connect(url) as other:
            await _outage_then_recovery(
                bridge,
                key,
                lambda: other.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE"),
                other.rollback,
            )
