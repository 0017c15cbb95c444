"""One database API: SQLite (WAL) now, PostgreSQL behind the same interface later.

Writes go through `Database.write(fn)`: `fn(tx)` is a plain function that runs inside a
transaction in the database's own thread, and its result is returned only after COMMIT.

Group commit: a single writer task takes every job waiting in the queue and hands the whole
batch to the writer thread in ONE hop: BEGIN, each job under its own SAVEPOINT (a failing job is
rolled back alone and gets its exception), COMMIT. So 100 concurrent reports cost one thread
hop and one fsync instead of 100 of each, and no caller hears "done" before its data is durable.

This is aiosqlite's model (one thread per connection) taken one step further: whole transactions,
not single statements, cross the thread boundary. Reads run the same way on a second connection
(WAL readers never block the writer). A PostgreSQL backend keeps this interface with a thread per
pooled connection (psycopg) and claims rows with FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import structlog

from bridge.errors import StoreError, Unavailable
from bridge.store.files import private_dir, private_file, tighten
from bridge.store.migrations import MIGRATIONS
from bridge.store.sealing import SecretBox, load_or_create_key

__all__ = ["Database", "Row", "Tx"]

log = structlog.get_logger("bridge.store")
T = TypeVar("T")
Row = sqlite3.Row
MAX_BATCH = 512
CHECKPOINT_EVERY_S = 0.25  # a passive WAL checkpoint this often, off the writer's thread
# The writer checkpoints itself only past this many WAL pages (~40 MiB): the safety net if the
# background checkpoints fall behind (they copy pages while the writer goes on committing).
WRITER_AUTOCHECKPOINT = 10_000


class Tx:
    """A connection inside a transaction, used from the database thread. SQL in `bridge/store/*` only."""

    def __init__(self, conn: sqlite3.Connection, fault: Callable[[str], None] | None) -> None:
        self._conn = conn
        self._fault = fault
        self.after_commit: list[Callable[[], None]] = []
        self._savepoints = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows changed."""
        return self._conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        row: Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block under its own SAVEPOINT: if it raises, its work alone is rolled back (and the
        exception goes on); the rest of the transaction stands. For sweeps, so one bad row cannot
        stop the others. After-commit callbacks the undone block registered are dropped with it."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        callbacks = len(self.after_commit)
        self._conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            del self.after_commit[callbacks:]  # what the undone work announced never happened
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        self._conn.execute(f"RELEASE {name}")

    def checkpoint(self, name: str) -> None:
        """A named point between the steps of a transaction where tests may inject a failure."""
        if self._fault is not None:
            self._fault(name)


@dataclass
class _Job:
    fn: Callable[[Tx], Any]
    future: asyncio.Future[Any]
    ok: bool = False
    value: Any = None
    after: list[Callable[[], None]] = field(default_factory=list)


class _BatchFailed(Exception):
    """The transaction itself broke (disk full, I/O error, lost savepoint): nothing was committed."""


class _Connection:
    """A sqlite3 connection owned by one thread; work is submitted as whole functions."""

    def __init__(
        self, path: Path, synchronous: str, busy_timeout_ms: int, box: SecretBox, autocheckpoint: int = 1000
    ) -> None:
        self._box = box
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._autocheckpoint = int(autocheckpoint)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="paybridge-db")
        self._path = path
        self._synchronous = synchronous
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _open(self) -> None:
        conn = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")  # validated by Database
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        conn.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")
        # Deleted or moved content is zeroed where that costs no extra I/O: a value rewritten (a
        # secret sealed by a migration) leaves no plaintext behind in the page's free space.
        conn.execute("PRAGMA secure_delete=FAST")
        self._box.install(conn)
        self.conn = conn

    async def open(self) -> None:
        await self.run(self._open)

    async def close(self) -> None:
        if self.conn is not None:
            await self.run(self.conn.close)
            self.conn = None
        self._pool.shutdown(wait=True)


class Database:
    def __init__(
        self, path: Path, synchronous: str = "FULL", busy_timeout_ms: int = 5000, key_file: Path | None = None
    ) -> None:
        self.path = path
        # The key that seals stored signing secrets lives outside the database (bridge.store.sealing).
        self.key_file = key_file or path.parent / "secrets.key"
        self.busy_timeout_ms = busy_timeout_ms
        self.synchronous = synchronous.upper()
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")
        self._writer: _Connection | None = None
        self._reader: _Connection | None = None
        self._checkpointer: _Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Tests set this to raise at a named checkpoint (crash-atomicity); never set in production.
        self.fault: Callable[[str], None] | None = None
        self.commits = 0  # group commits made
        self.writes = 0  # write jobs committed or failed by them (writes / commits = batching)

    async def open(self) -> None:
        # Private whatever the umask: the dir 0700, the database 0600 before SQLite first opens it
        # (SQLite gives -wal and -shm the database file's mode), all of them tightened if older.
        private_dir(self.path.parent)
        private_file(self.path)
        tighten(*self._side_files())
        box = SecretBox(load_or_create_key(self.key_file))
        self._writer = _Connection(self.path, self.synchronous, self.busy_timeout_ms, box, WRITER_AUTOCHECKPOINT)
        await self._writer.open()
        try:
            await self._writer.run(self._migrate)
            await self._writer.run(self._check_key)
        except BaseException:  # refused to start: leave no connection (nor its thread) behind
            await self._writer.close()
            self._writer = None
            raise
        tighten(*self._side_files())
        self._reader = _Connection(self.path, self.synchronous, self.busy_timeout_ms, box)
        await self._reader.open()
        self._checkpointer = _Connection(self.path, self.synchronous, self.busy_timeout_ms, box)
        await self._checkpointer.open()
        self._task = asyncio.create_task(self._write_loop(), name="db-writer")
        self._checkpoints = asyncio.create_task(self._checkpoint_loop(), name="db-checkpoints")

    def _side_files(self) -> tuple[Path, Path]:
        return self.path.with_name(self.path.name + "-wal"), self.path.with_name(self.path.name + "-shm")

    async def _checkpoint_loop(self) -> None:
        """Copy committed WAL pages into the database file from a connection of its own, so the
        writer's commits do not pay for it (PASSIVE: never waits for, nor blocks, the writer)."""
        assert self._checkpointer is not None
        checkpointer = self._checkpointer

        def checkpoint() -> None:
            assert checkpointer.conn is not None
            checkpointer.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

        while True:
            await asyncio.sleep(CHECKPOINT_EVERY_S)
            try:
                await checkpointer.run(checkpoint)
            except sqlite3.Error as e:  # busy or failing: the next round (or the writer's own) catches up
                log.warning("db.checkpoint_failed", error=str(e))

    def _migrate(self) -> None:
        assert self._writer is not None and self._writer.conn is not None
        conn = self._writer.conn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = (row[0] if row else None) or 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the database schema is version {current}, newer than this bridge knows "
                f"({len(MIGRATIONS)}); upgrade paybridge"
            )
        applied = False
        for version, (description, statements) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            applied = True
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql in statements:
                    conn.execute(sql)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise StoreError(f"migration {version} ({description}) failed") from None
        if applied and current > 0:  # an upgrade: no WAL frame of old rows (a secret before sealing) stays
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _check_key(self) -> None:
        """Refuse to start with a key that does not open the stored secrets (a wrong or replaced
        secrets.key): better than failing every event that would be signed with them."""
        assert self._writer is not None and self._writer.conn is not None
        try:
            self._writer.conn.execute(
                "SELECT open_secret('merchants.webhook_secret', webhook_secret) FROM merchants LIMIT 1"
            ).fetchall()
        except sqlite3.Error:
            raise StoreError(
                f"the secrets key {self.key_file} does not open the webhook secrets stored in {self.path}; "
                "restore the key file that belongs to this database"
            ) from None

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(Unavailable("the bridge is shutting down"))
        for conn in (self._checkpointer, self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._checkpointer = self._reader = self._writer = None

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in a write transaction (in the database thread); return its result after COMMIT."""
        if self._task is None or self._task.done():
            raise Unavailable("the database is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(fn, fut))
        return await asyncio.shield(fut)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` against a consistent snapshot (a read transaction) in the reader thread."""
        if self._reader is None:
            raise Unavailable("the database is not open")
        reader = self._reader

        def run() -> T:
            assert reader.conn is not None
            reader.conn.execute("BEGIN")
            try:
                return fn(Tx(reader.conn, None))
            finally:
                reader.conn.execute("COMMIT")

        try:
            return await reader.run(run)
        except sqlite3.OperationalError as e:
            raise Unavailable(f"database error: {e}", "database_unavailable") from None

    async def _write_loop(self) -> None:
        assert self._writer is not None
        writer = self._writer
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < MAX_BATCH and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await writer.run(self._run_batch, jobs)
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(Unavailable("the bridge is shutting down"))
                raise
            except _BatchFailed as e:
                log.warning("db.batch_failed", jobs=len(jobs), error=str(e))
                err = Unavailable(f"the database refused the write: {e}", "database_unavailable")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            self.commits += 1
            self.writes += len(jobs)
            for job in jobs:
                if job.future.done():  # the caller went away; the work is committed regardless
                    continue
                if job.ok:
                    for cb in job.after:
                        try:
                            cb()
                        except Exception as e:  # a wake-up failing must not hide a committed result
                            log.error("db.after_commit_failed", error=repr(e))
                    job.future.set_result(job.value)
                else:
                    job.future.set_exception(job.value)

    def _run_batch(self, jobs: list[_Job]) -> None:
        """In the writer thread: BEGIN, each job under a SAVEPOINT, COMMIT.

        A job that raises is rolled back alone. Anything that breaks the transaction itself
        (disk full, I/O error, a lost savepoint) raises _BatchFailed: nothing of the batch is
        committed and every caller is told to retry (devices resend; nothing was acked).
        """
        assert self._writer is not None and self._writer.conn is not None
        conn = self._writer.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(jobs):
                tx = Tx(conn, self.fault)
                sp = f"j{i}"
                conn.execute(f"SAVEPOINT {sp}")
                try:
                    job.value = job.fn(tx)
                    job.ok = True
                    job.after = tx.after_commit
                except Exception as e:  # the job failed: undo only its own work
                    conn.execute(f"ROLLBACK TO {sp}")
                    job.ok, job.value = False, _classify(e)
                conn.execute(f"RELEASE {sp}")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise _BatchFailed(str(e)) from None


def _classify(e: Exception) -> Exception:
    """Database errors become Unavailable (retry later); our own errors pass through."""
    if isinstance(e, sqlite3.OperationalError):
        return Unavailable(f"database error: {e}", "database_unavailable")
    return e
