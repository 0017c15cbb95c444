"""The durable on-device outbox (aiosqlite): the truth about what still has to reach the bridge.

Every recognised notification becomes a row holding the exact report frame (event id, seq and
all) *before* anything is sent; a row leaves only when the bridge acks it. The fingerprint of
every notification the agent has handled goes into `seen` in the same transaction, so
re-reading the notification shade (after a restart, or every poll of a snapshot source) never
creates a second event, while two distinct notifications of the same amount create two.

SQLite runs in WAL mode with `synchronous=FULL`: a committed row survives a kill -9 and a power
cut. One connection is shared by the agent's reader and the websocket client; an asyncio lock
keeps their transactions from interleaving on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosqlite

from device_agent.core.notifications import Notification, fingerprint
from device_agent.core.protocol import ParsedLike, encode, report_frame
from device_agent.errors import ConfigError
from device_agent.logs import log_event

__all__ = ["SCHEMA_VERSION", "Outbox", "OutboxItem", "OutboxSnapshot", "read_snapshot"]

log = logging.getLogger("device_agent.outbox")
T = TypeVar("T")

SCHEMA_VERSION = 1
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
        " fingerprint TEXT NOT NULL, body TEXT NOT NULL, created_at INTEGER NOT NULL)",
        "CREATE TABLE seen (fingerprint TEXT PRIMARY KEY, seen_at INTEGER NOT NULL)",
        "CREATE INDEX seen_by_time ON seen (seen_at)",
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO meta (name, value) VALUES ('last_seq', 0)",
    ),
}


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One unacknowledged report; `body` is the frame text, identical on every resend."""

    seq: int
    event_id: str
    body: str
    created_at: int


@dataclass(frozen=True, slots=True)
class OutboxSnapshot:
    """What `paybridge-agent status` shows about the outbox."""

    depth: int
    last_seq: int
    last_ack_at: int | None
    oldest_created_at: int | None


class Outbox:
    """The outbox and the seen-fingerprint table over one aiosqlite connection."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: Path, *, synchronous: str = "FULL") -> Outbox:
        """Open (creating and migrating if needed) the outbox database at `path`."""
        if synchronous.upper() not in ("FULL", "EXTRA", "NORMAL"):
            raise ConfigError("outbox synchronous mode must be FULL, EXTRA or NORMAL")
        try:
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open the outbox {path}: {e}") from None
        try:
            await db.execute("PRAGMA busy_timeout = 10000")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            await _migrate(db, path)
        except BaseException:
            await db.close()
            raise
        return cls(db, path)

    async def close(self) -> None:
        async with self._lock:
            await self._db.close()

    async def __aenter__(self) -> Outbox:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _transaction(self, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run `body` in one IMMEDIATE transaction that, once started, always finishes.

        A cancellation (shutdown) arriving mid-transaction waits for the commit or rollback
        before it propagates, so the shared connection is never left inside a transaction.
        """
        task = asyncio.ensure_future(self._run_transaction(body))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await task
            raise

    async def _run_transaction(self, body: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                result = await body(self._db)
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
            await self._db.execute("COMMIT")
            return result

    async def unseen(self, fingerprints: Iterable[str]) -> set[str]:
        """The fingerprints among `fingerprints` that the agent has not handled yet."""
        wanted = set(fingerprints)
        if not wanted:
            return set()
        async with self._lock:
            cur = await self._db.execute(
                "SELECT fingerprint FROM seen WHERE fingerprint IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(wanted)),),
            )
            known = {str(r[0]) for r in await cur.fetchall()}
        return wanted - known

    async def record(
        self,
        batch: Sequence[tuple[Notification, ParsedLike | None]],
        *,
        now_ms: int,
        new_event_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> list[OutboxItem]:
        """Record a batch in one transaction; return the new outbox items in seq order.

        Each notification is marked seen; those with a parse result (payment or unrecognised)
        also become a report row with the next seq. Already-seen notifications, including a
        repeat inside the batch, are skipped.
        """

        async def body(db: aiosqlite.Connection) -> list[OutboxItem]:
            cur = await db.execute("SELECT value FROM meta WHERE name = 'last_seq'")
            row = await cur.fetchone()
            seq = int(row[0]) if row else 0
            items: list[OutboxItem] = []
            for notification, parsed in batch:
                fp = fingerprint(notification)
                cur = await db.execute("INSERT OR IGNORE INTO seen (fingerprint, seen_at) VALUES (?, ?)", (fp, now_ms))
                if cur.rowcount == 0 or parsed is None:
                    continue
                seq += 1
                event_id = new_event_id()
                frame = report_frame(
                    event_id=event_id, seq=seq, observed_at=now_ms, parsed=parsed, notification=notification
                )
                text = encode(frame)
                await db.execute(
                    "INSERT INTO outbox (seq, event_id, fingerprint, body, created_at) VALUES (?, ?, ?, ?, ?)",
                    (seq, event_id, fp, text, now_ms),
                )
                items.append(OutboxItem(seq=seq, event_id=event_id, body=text, created_at=now_ms))
            if items:
                await db.execute("UPDATE meta SET value = ? WHERE name = 'last_seq'", (seq,))
            return items

        items = await self._transaction(body)
        for item in items:
            log_event(log, "outbox.enqueued", level=logging.DEBUG, seq=item.seq, event_id=item.event_id)
        return items

    async def pending(self, *, after_seq: int = 0, limit: int = 64) -> list[OutboxItem]:
        """Unacknowledged items with seq > `after_seq`, oldest first."""
        async with self._lock:
            cur = await self._db.execute(
                "SELECT seq, event_id, body, created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
            rows = await cur.fetchall()
        return [OutboxItem(seq=int(r[0]), event_id=str(r[1]), body=str(r[2]), created_at=int(r[3])) for r in rows]

    async def ack(self, *, event_id: str | None, seq: int | None = None, now_ms: int) -> bool:
        """Delete the acknowledged item (by event id, else by seq); False if it was not there."""
        if event_id is None and seq is None:
            return False

        async def body(db: aiosqlite.Connection) -> bool:
            if event_id is not None:
                cur = await db.execute("DELETE FROM outbox WHERE event_id = ?", (event_id,))
            else:
                cur = await db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            await db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('last_ack_at', ?)", (now_ms,))
            return cur.rowcount > 0

        return await self._transaction(body)

    async def depth(self) -> int:
        """How many reports wait for an ack."""
        async with self._lock:
            cur = await self._db.execute("SELECT COUNT(*) FROM outbox")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def snapshot(self) -> OutboxSnapshot:
        """Depth, last seq, last ack time and the age of the oldest item."""
        async with self._lock:
            cur = await self._db.execute(_SNAPSHOT_SQL)
            row = await cur.fetchone()
        return _snapshot_from(row)

    async def prune_seen(self, *, older_than_ms: int) -> int:
        """Forget fingerprints seen before `older_than_ms` (never those still in the outbox)."""

        async def body(db: aiosqlite.Connection) -> int:
            cur = await db.execute(
                "DELETE FROM seen WHERE seen_at < ? AND fingerprint NOT IN (SELECT fingerprint FROM outbox)",
                (older_than_ms,),
            )
            return int(cur.rowcount)

        pruned = await self._transaction(body)
        if pruned:
            log_event(log, "outbox.seen_pruned", count=pruned)
        return pruned


_SNAPSHOT_SQL = (
    "SELECT (SELECT COUNT(*) FROM outbox), (SELECT value FROM meta WHERE name = 'last_seq'),"
    " (SELECT value FROM meta WHERE name = 'last_ack_at'), (SELECT MIN(created_at) FROM outbox)"
)


def _snapshot_from(row: Any) -> OutboxSnapshot:
    if row is None:
        return OutboxSnapshot(depth=0, last_seq=0, last_ack_at=None, oldest_created_at=None)
    return OutboxSnapshot(
        depth=int(row[0]),
        last_seq=int(row[1] or 0),
        last_ack_at=None if row[2] is None else int(row[2]),
        oldest_created_at=None if row[3] is None else int(row[3]),
    )


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    cur = await db.execute("PRAGMA user_version")
    row = await cur.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"the outbox {path} was written by a newer agent (schema {version} > {SCHEMA_VERSION}); upgrade the agent"
        )
    for step in range(version + 1, SCHEMA_VERSION + 1):
        await db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _MIGRATIONS[step]:
                await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {step}")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")


def read_snapshot(path: Path) -> OutboxSnapshot | None:
    """Synchronous read of the outbox for `status` (None if there is no outbox yet).

    Safe while the agent runs: WAL readers never block the writer.
    """
    if not path.exists():
        return None
    try:
        con = sqlite3.connect(path, timeout=5.0)
        try:
            con.execute("PRAGMA query_only = 1")
            if con.execute("PRAGMA user_version").fetchone()[0] < 1:
                return None  # created a moment ago by a starting agent, schema not committed yet
            return _snapshot_from(con.execute(_SNAPSHOT_SQL).fetchone())
        finally:
            con.close()
    except sqlite3.Error as e:
        raise ConfigError(f"cannot read the outbox {path}: {e}") from None
