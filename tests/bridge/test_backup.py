"""`paybridge backup`: SQLite's online backup of a running bridge, taken by the real CLI in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.harness import RunningBridge, make_settings, running_bridge

ROOT = Path(__file__).resolve().parents[2]


async def _cli(*args: str, **extra: str) -> tuple[int, str, str]:
    """Run `python -m bridge <args>` with `extra` as its only PAYBRIDGE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")} | extra
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, cwd=ROOT, env=env, stdout=-1, stderr=-1
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _sqlite(data: Path) -> str:
    return f"sqlite://{data.absolute().as_posix()}/paybridge.db"


async def test_a_backup_taken_while_the_bridge_writes_holds_every_order_committed_before_it(tmp_path: Path) -> None:
    """Orders go on being created during the backup; the copy opens in a bridge and holds each one acked before it."""
    data = tmp_path / "live"
    backup = tmp_path / "copy" / "paybridge.db"
    backup.parent.mkdir()
    created: list[str] = []
    async with running_bridge(make_settings(data, database_url=_sqlite(data))) as live:
        key = (await live.merchant())["api_key"]
        stop = asyncio.Event()

        async def keep_ordering() -> None:
            while not stop.is_set():
                created.append((await live.order(key, f"{100 + len(created)}.00"))["id"])

        async def until(n: int) -> None:
            deadline = asyncio.get_running_loop().time() + 30
            while len(created) < n:
                assert not writer.done(), writer.result()
                assert asyncio.get_running_loop().time() < deadline, len(created)
                await asyncio.sleep(0.01)

        writer = asyncio.create_task(keep_ordering())
        await until(20)
        acknowledged = list(created)
        code, out, err = await _cli("backup", "--data-dir", str(data), "--to", str(backup))
        await until(len(created) + 5)  # the bridge went on writing past the backup
        stop.set()
        await writer
    assert code == 0, err
    assert "backed up" in out and oct(backup.stat().st_mode & 0o777) == "0o600"

    copy = make_settings(
        tmp_path / "copy", database_url=_sqlite(tmp_path / "copy"), secrets_key_file=str(data / "secrets.key")
    )
    async with running_bridge(copy) as restored:
        ids = await _all_order_ids(restored, key)
    assert set(acknowledged) <= ids <= set(created)
    assert len(ids) < len(created)  # a snapshot, not the final state


async def _all_order_ids(bridge: RunningBridge, key: str) -> set[str]:
    status, page = await bridge.call("GET", "/v1/orders?limit=500", token=key)
    assert status == 200, page
    assert not page.get("has_more"), "the test makes fewer than 500 orders"
    return {o["id"] for o in page["data"]}


async def test_backup_refuses_an_existing_file_and_points_postgresql_to_pg_dump(tmp_path: Path) -> None:
    """An existing target is never overwritten; a PostgreSQL database is pg_dump's job."""
    data = tmp_path / "live"
    async with running_bridge(make_settings(data, database_url=_sqlite(data))) as live:
        await live.merchant()
    taken = tmp_path / "taken.db"
    taken.write_bytes(b"keep me")
    code, _, err = await _cli("backup", "--data-dir", str(data), "--to", str(taken))
    assert code == 3 and "exists already" in err and taken.read_bytes() == b"keep me"
    pg_url = "postgresql://paybridge@db.invalid:5432/paybridge"
    code, _, err = await _cli(
        "backup", "--data-dir", str(data), "--to", str(tmp_path / "x.db"), PAYBRIDGE_DATABASE_URL=pg_url
    )
    assert code == 2 and "pg_dump" in err and not (tmp_path / "x.db").exists()
