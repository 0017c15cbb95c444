"""The on-device outbox: durable, ordered, deduplicated by notification fingerprint."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from device_agent.core.notifications import Notification, fingerprint
from device_agent.errors import ConfigError
from device_agent.outbox import SCHEMA_VERSION, Outbox, read_snapshot

ROOT = Path(__file__).resolve().parents[2]
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Parsed:
    kind: str = "payment"
    channel: str | None = "alipay"
    amount_cents: int | None = 500
    reason: str = "alipay.received"


PAY = Parsed()


def note(i: int, *, title: str = "你已成功收款5.00元", when: int | None = None) -> Notification:
    return Notification(
        package="com.eg.android.AlipayGphone",
        title=title,
        text="已转入余额",
        when=1764206400000 + i if when is None else when,
        key=f"0|com.eg.android.AlipayGphone|{i}|null|10123",
    )


async def test_recorded_reports_get_increasing_seqs_and_the_exact_frame(tmp_path: Path) -> None:
    """Each recognised notification becomes a row whose body is its report frame, seq 1, 2, 3 in order."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        items = await outbox.record([(note(i), PAY) for i in range(3)], now_ms=77)
        assert [i.seq for i in items] == [1, 2, 3]
        pending = await outbox.pending()
        assert pending == items
        body = json.loads(pending[0].body)
        assert body["type"] == "report" and body["seq"] == 1 and body["event_id"] == items[0].event_id
        assert body["observed_at"] == 77 and body["parsed"]["amount_cents"] == 500
        assert body["notification"] == note(0).to_wire()
        assert len({i.event_id for i in items}) == 3


async def test_pending_pages_through_the_outbox_in_seq_order(tmp_path: Path) -> None:
    """`pending(after_seq, limit)` returns the next rows in seq order."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        await outbox.record([(note(i), PAY) for i in range(10)], now_ms=1)
        assert [i.seq for i in await outbox.pending(after_seq=3, limit=4)] == [4, 5, 6, 7]
        assert await outbox.pending(after_seq=10) == []


async def test_a_notification_seen_again_creates_nothing_new(tmp_path: Path) -> None:
    """Re-reading the same notification (same batch, next batch, after a reopen) adds no event."""
    path = tmp_path / "o.db"
    async with await Outbox.open(path) as outbox:
        assert len(await outbox.record([(note(1), PAY), (note(1), PAY)], now_ms=1)) == 1
        assert await outbox.record([(note(1), PAY)], now_ms=2) == []
    async with await Outbox.open(path) as outbox:
        assert await outbox.record([(note(1), PAY)], now_ms=3) == []
        assert await outbox.unseen([fingerprint(note(1)), fingerprint(note(2))]) == {fingerprint(note(2))}
        assert await outbox.depth() == 1


async def test_two_distinct_payments_of_the_same_amount_are_two_events(tmp_path: Path) -> None:
    """Same amount and text but a different notification (key/time) is a second payment."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        a = await outbox.record([(note(1), PAY)], now_ms=1)
        b = await outbox.record([(note(2), PAY)], now_ms=2)
        assert len(a) == len(b) == 1 and a[0].event_id != b[0].event_id
        assert await outbox.depth() == 2


async def test_ignored_notifications_are_remembered_but_never_queued(tmp_path: Path) -> None:
    """A notification without a parse result is marked seen and creates no report."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        assert await outbox.record([(note(1), None)], now_ms=1) == []
        assert await outbox.unseen([fingerprint(note(1))]) == set()
        assert await outbox.depth() == 0


async def test_acks_delete_rows_and_seqs_are_never_reused(tmp_path: Path) -> None:
    """An acked row leaves the outbox; later reports continue the sequence even after a reopen."""
    path = tmp_path / "o.db"
    async with await Outbox.open(path) as outbox:
        (first, second) = await outbox.record([(note(1), PAY), (note(2), PAY)], now_ms=1)
        assert await outbox.ack(event_id=first.event_id, now_ms=10) is True
        assert await outbox.ack(event_id=first.event_id, now_ms=11) is False
        assert await outbox.ack(event_id=None, seq=second.seq, now_ms=12) is True
        assert await outbox.depth() == 0
    async with await Outbox.open(path) as outbox:
        (third,) = await outbox.record([(note(3), PAY)], now_ms=20)
        assert third.seq == 3
        snap = await outbox.snapshot()
        assert (snap.depth, snap.last_seq, snap.last_ack_at, snap.oldest_created_at) == (1, 3, 12, 20)


async def test_unacked_rows_survive_a_reopen_byte_for_byte(tmp_path: Path) -> None:
    """Closing and reopening keeps every unacked row with the same event id, seq and body."""
    path = tmp_path / "o.db"
    async with await Outbox.open(path) as outbox:
        before = await outbox.record([(note(i), PAY) for i in range(5)], now_ms=1)
    async with await Outbox.open(path) as outbox:
        assert await outbox.pending() == before


async def test_pruning_forgets_old_fingerprints_but_not_queued_ones(tmp_path: Path) -> None:
    """Seen rows older than the cut-off go, unless their report still waits for an ack."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        await outbox.record([(note(1), None), (note(2), PAY)], now_ms=0)
        await outbox.record([(note(3), None)], now_ms=8 * DAY_MS)
        assert await outbox.prune_seen(older_than_ms=7 * DAY_MS) == 1
        assert await outbox.unseen([fingerprint(note(i)) for i in (1, 2, 3)]) == {fingerprint(note(1))}


async def test_concurrent_writers_get_unique_consecutive_seqs(tmp_path: Path) -> None:
    """Fifty concurrent record calls on one connection never interleave their transactions."""
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        results = await asyncio.gather(*(outbox.record([(note(i), PAY)], now_ms=i) for i in range(50)))
        seqs = sorted(item.seq for items in results for item in items)
        assert seqs == list(range(1, 51))


async def test_the_database_runs_in_wal_mode(tmp_path: Path) -> None:
    """The outbox file is in WAL mode (readers such as `status` never block the agent)."""
    async with await Outbox.open(tmp_path / "o.db"):
        con = sqlite3.connect(tmp_path / "o.db")
        try:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            con.close()


async def test_an_outbox_from_a_newer_agent_is_refused(tmp_path: Path) -> None:
    """A schema version above this agent's stops start-up with a ConfigError naming the fix."""
    con = sqlite3.connect(tmp_path / "o.db")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(ConfigError, match="newer agent"):
        await Outbox.open(tmp_path / "o.db")


async def test_the_synchronous_snapshot_reads_a_live_outbox(tmp_path: Path) -> None:
    """`read_snapshot` (used by `status`) sees depth and last seq while the outbox is open."""
    assert read_snapshot(tmp_path / "missing.db") is None
    async with await Outbox.open(tmp_path / "o.db") as outbox:
        await outbox.record([(note(i), PAY) for i in range(4)], now_ms=1)
        snap = read_snapshot(tmp_path / "o.db")
        assert snap is not None and (snap.depth, snap.last_seq, snap.last_ack_at) == (4, 4, None)


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from dataclasses import dataclass
    from pathlib import Path
    from device_agent.core.notifications import Notification
    from device_agent.outbox import Outbox

    @dataclass(frozen=True)
    class P:
        kind: str = "payment"
        channel: str = "alipay"
        amount_cents: int = 100
        reason: str = "r"

    async def main() -> None:
        outbox = await Outbox.open(Path(sys.argv[1]))
        i = 0
        while True:
            i += 1
            n = Notification(package="com.eg.android.AlipayGphone", title="t", text=None, when=i, key=str(i))
            (item,) = await outbox.record([(n, P())], now_ms=i)
            print(item.seq, flush=True)

    asyncio.run(main())
    """
)


def test_a_sigkill_mid_write_loses_no_committed_report(tmp_path: Path) -> None:
    """A writer killed with SIGKILL while writing leaves every reported commit, intact and in order."""
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    db = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    confirmed = 0
    try:
        for line in proc.stdout:
            confirmed = int(line)
            if confirmed >= 40:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert confirmed >= 40
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = con.execute("SELECT seq, event_id, body FROM outbox ORDER BY seq").fetchall()
    finally:
        con.close()
    seqs = [r[0] for r in rows]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= confirmed
    for seq, event_id, body in rows:
        frame = json.loads(body)
        assert frame["seq"] == seq and frame["event_id"] == event_id


def test_the_snapshot_of_a_database_without_schema_yet_is_empty(tmp_path: Path) -> None:
    """`status` racing a starting agent (file created, schema not committed) sees no outbox, not an error."""
    sqlite3.connect(tmp_path / "o.db").close()
    assert read_snapshot(tmp_path / "o.db") is None
