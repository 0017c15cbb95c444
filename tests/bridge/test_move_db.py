"""`paybridge move-db`: a bridge's SQLite data moved into PostgreSQL (tests/pg.py) and served from there.

The source is filled through the API and a paired device, the move runs as the real CLI in a
subprocess, and the bridge started on PostgreSQL is checked through the API again.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from standardwebhooks.webhooks import Webhook

from bridge.store.move import SEALED
from tests import pg
from tests.harness import RunningBridge, TestDevice, eventually, make_settings, running_bridge, running_receiver

ROOT = Path(__file__).resolve().parents[2]
SEALING = re.compile(r"seal_secret\('([a-z_.]+)'")


async def _cli(*args: str) -> tuple[int, str, str]:
    """Run `python -m bridge <args>` with no PAYBRIDGE_* variables from the test's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, cwd=ROOT, env=env, stdout=-1, stderr=-1
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _get(bridge: RunningBridge, key: str, path: str) -> dict[str, Any]:
    status, body = await bridge.call("GET", path, token=key)
    assert status == 200, (path, body)
    return dict(body)


def _sqlite(data: Path) -> str:
    return f"sqlite://{data.absolute().as_posix()}/paybridge.db"


def _tables_with_rows(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        names = [
            str(r[0])
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema() AND table_name <> 'schema_version'"
            )
        ]
        return [
            n
            for n in names
            if conn.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(n))).fetchone() is not None
        ]


async def test_a_moved_database_serves_the_same_data_and_signs_with_the_same_secrets(tmp_path: Path) -> None:
    """Orders, payments, a paired device, endpoints and deliveries survive the move; the moved secrets still sign."""
    target = pg.fresh_database()
    data = tmp_path / "sqlite"
    async with running_receiver() as rec:
        async with running_bridge(make_settings(data, database_url=_sqlite(data))) as a:
            m = await a.merchant("pbs1:not-a-sealed-secret")  # shaped like one only by its prefix
            key = m["api_key"]
            ep = await a.call("POST", "/v1/webhook-endpoints", token=key, json_body={"url": rec.url})
            assert ep[0] == 201, ep
            endpoint = ep[1]
            status, rotated = await a.call("POST", f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", token=key)
            assert status == 200, rotated
            assert (await a.call("GET", "/v1/compat", token=key))[0] == 200  # sealed shop-gateway keys too
            device = await a.pair(key, channels=["alipay"])
            await device.connect()
            paid = await a.order(key, "12.30")
            ack = await device.pay(paid["pay_amount_cents"])
            assert ack["status"] == "accepted", ack
            pending = await a.order(key, "45.60")
            await device.close()
            await rec.wait_for(lambda: len(rec.events("order.paid")) == 1)
            # The phone's going offline is recorded after its socket closes: wait for it, and for every
            # event's delivery to settle, so the snapshot taken here is the one that gets moved.
            before_events = await eventually(
                lambda: _get(a, key, "/v1/events?limit=100"),
                lambda p: "device.offline" in [e["type"] for e in p["data"]],
            )
            deliveries = await eventually(
                lambda: _get(a, key, "/v1/deliveries?limit=100"),
                lambda p: (
                    len(p["data"]) == len(before_events["data"]) and all(d["status"] == "succeeded" for d in p["data"])
                ),
            )

        code, out, err = await _cli("move-db", "--data-dir", str(data), "--to", target)
        assert code == 0, err
        assert "every table's count matches" in out, out
        assert "COUNTS DIFFER" not in out

        moved = make_settings(tmp_path / "pg", database_url=target, secrets_key_file=str(data / "secrets.key"))
        async with running_bridge(moved) as b:
            order = await _get(b, key, f"/v1/orders/{paid['id']}")
            assert order["status"] == "paid" and order["payment_id"] == ack["payment_id"]
            assert (await _get(b, key, f"/v1/orders/{pending['id']}"))["status"] == "pending"
            assert (await _get(b, key, f"/v1/payments/{ack['payment_id']}"))["order_id"] == paid["id"]
            devices = await _get(b, key, "/v1/devices")
            assert [d["id"] for d in devices["data"]] == [device.device_id]
            assert (await _get(b, key, f"/v1/webhook-endpoints/{endpoint['id']}"))["url"] == rec.url
            assert (await _get(b, key, "/v1/events?limit=100"))["data"] == before_events["data"]
            assert (await _get(b, key, "/v1/deliveries?limit=100"))["data"] == deliveries["data"]

            # The same phone, key and device id, paying the pending order through the moved bridge:
            # a new event (past the copied identity) is signed with the endpoint's moved secrets.
            phone = TestDevice(b.ws_url, key=device.key, device_id=device.device_id, seq=device.seq)
            await phone.connect()
            ack2 = await phone.pay(pending["pay_amount_cents"])
            await phone.close()
            assert ack2["status"] == "accepted", ack2
            await rec.wait_for(lambda: len(rec.events("order.paid")) == 2)
            headers, body = next(
                (h, b) for h, b in rec.requests if b'"order.paid"' in b and pending["id"].encode() in b
            )
            for secret in (endpoint["secret"], rotated["secret"]):
                assert Webhook(secret).verify(body, headers)["data"]["order"]["id"] == pending["id"]
            after = await _get(b, key, "/v1/events?limit=100")
            assert len(after["data"]) > len(before_events["data"])


async def test_a_wrong_key_or_a_target_with_data_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    """A key that does not open the source's secrets, or a target that already holds rows, refuses the move."""
    target = pg.fresh_database()
    data = tmp_path / "sqlite"
    async with running_bridge(make_settings(data, database_url=_sqlite(data))) as a:
        await a.merchant()
    other_key = tmp_path / "other.key"
    other_key.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n")
    other_key.chmod(0o600)

    code, _, err = await _cli("move-db", "--data-dir", str(data), "--secrets-key-file", str(other_key), "--to", target)
    assert code == 3 and "secrets key" in err, err
    assert _tables_with_rows(target) == []

    code, _, err = await _cli("move-db", "--data-dir", str(data), "--to", target)
    assert code == 0, err
    code, _, err = await _cli("move-db", "--data-dir", str(data), "--to", target)
    assert code == 3 and "not empty" in err, err
    assert "merchants" in _tables_with_rows(target)


def test_move_db_knows_every_kind_of_sealed_secret_the_store_writes() -> None:
    """Every `seal_secret('<kind>', ...)` in bridge/ names a kind move-db re-seals: a new kind is not missed."""
    kinds = {k for path in (ROOT / "bridge").rglob("*.py") for k in SEALING.findall(path.read_text(encoding="utf-8"))}
    assert kinds, "the pattern finds the store's seal_secret calls"
    assert kinds <= set(SEALED.values()), sorted(kinds - set(SEALED.values()))
