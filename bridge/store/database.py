"""One database API: SQLite (aiosqlite, WAL) now, PostgreSQL behind the same interface later.

Writes go through `Database.write(fn)`: `fn(tx)` runs inside a transaction and its result is
returned only after COMMIT. Concurrent writes are grouped: a single writer task takes every
job waiting in the queue, runs each under its own SAVEPOINT (a failing job is rolled back alone)
and commits them together. That is group commit: one fsync for many reports, and no ack before
its data is durable. Reads use a separate connection (WAL readers never block the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bridge.errors import StoreError, Unavailable
from bridge.store.migrations import MIGRATIONS

__all__ = ["Database", "Row", "Tx"]

T = TypeVar("T")
Row = sqlite3.Row
MAX_BATCH = 256


class Tx:
    """A connection inside a transaction. SQL in `bridge/store/*` only."""

    def __init__(self, conn: aiosqlite.Connection, fault: Callable[[str], None] | None) -> None:
        self._conn = conn
        self._fault = fault
        self.after_commit: list[Callable[[], None]] = []

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows changed."""
        cur = await self._conn.execute(sql, params)
        n = cur.rowcount
        await cur.close()
        return n

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._conn.execute(sql, params) as cur:
            row: Row | None = await cur.fetchone()
            return row

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        async with self._conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    def checkpoint(self, name: str) -> None:
        """A named point between the steps of a transaction where tests may inject a failure."""
        if self._fault is not None:
            self._fault(name)


@dataclass
class _Job:
    fn: Callable[[Tx], Awaitable[Any]]
    future: asyncio.Future[Any]
    after: list[Callable[[], None]] = field(default_factory=list)


class Database:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._read_lock = asyncio.Lock()
        # Tests set this to raise at a named checkpoint (crash-atomicity); never set in production.
        self.fault: Callable[[str], None] | None = None
        self.commits = 0
        self.writes = 0
        self.failed_batches = 0
        self.callback_errors = 0
        self.last_callback_error = ""

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._migrate(self._writer)
        self._reader = await self._connect()
        self._task = asyncio.create_task(self._write_loop(), name="db-writer")

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(str(self.path), isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self.synchronous}")  # validated in __init__
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        return conn

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with conn.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        current = (row[0] if row else None) or 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the database schema is version {current}, newer than this bridge knows "
                f"({len(MIGRATIONS)}); upgrade paybridge"
            )
        for version, (description, statements) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                await conn.execute("COMMIT")
            except BaseException:
                await conn.execute("ROLLBACK")
                raise StoreError(f"migration {version} ({description}) failed") from None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Unavailable("the bridge is shutting down"))
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def write(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` in a write transaction; return its result after COMMIT."""
        if self._task is None or self._task.done():
            raise Unavailable("the database is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, fut))
        return await asyncio.shield(fut)

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """Run `fn` against a consistent snapshot (a read transaction)."""
        assert self._reader is not None, "database not open"
        async with self._read_lock:
            tx = Tx(self._reader, None)
            await self._reader.execute("BEGIN")
            try:
                return await fn(tx)
            finally:
                await self._reader.execute("COMMIT")

    async def _write_loop(self) -> None:
        assert self._writer is not None
        conn = self._writer
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < MAX_BATCH and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await self._run_batch(conn, jobs)
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(Unavailable("the bridge is shutting down"))
                raise

    async def _run_batch(self, conn: aiosqlite.Connection, jobs: list[_Job]) -> None:
        """Run jobs under savepoints in one transaction; resolve their futures only after COMMIT.

        A job that raises is rolled back alone. Anything that breaks the transaction itself
        (disk full, I/O error, a lost savepoint) fails the whole batch with `Unavailable`: nothing
        of it is committed and nobody is told otherwise, so callers retry (devices resend).
        """
        results: list[tuple[_Job, bool, Any]] = []
        try:
            await conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(jobs):
                tx = Tx(conn, self.fault)
                sp = f"j{i}"
                await conn.execute(f"SAVEPOINT {sp}")
                try:
                    value = await job.fn(tx)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the job failed: undo only its own work
                    await conn.execute(f"ROLLBACK TO {sp}")
                    await conn.execute(f"RELEASE {sp}")
                    results.append((job, False, _classify(e)))
                    continue
                await conn.execute(f"RELEASE {sp}")
                job.after = tx.after_commit
                results.append((job, True, value))
            await conn.execute("COMMIT")
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.execute("ROLLBACK"))
            raise
        except Exception as e:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            self.failed_batches += 1
            err = Unavailable(f"the database refused the write: {e}", "database_unavailable")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        self.commits += 1
        self.writes += len(jobs)
        for job, ok, value in results:
            if job.future.done():
                continue
            if ok:
                for cb in job.after:
                    try:
                        cb()
                    except Exception as e:  # a wake-up failing must not hide a committed result
                        self.callback_errors += 1
                        self.last_callback_error = repr(e)
                job.future.set_result(value)
            else:
                job.future.set_exception(value)


def _classify(e: Exception) -> Exception:
    """Database errors become Unavailable (retry later); our own errors pass through."""
    if isinstance(e, sqlite3.OperationalError):
        return Unavailable(f"database error: {e}", "database_unavailable")
    return e
