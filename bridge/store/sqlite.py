"""The SQLite backend: WAL, one writer thread with group commit, a reader and a checkpointer.

The data dir is private (0700, its files 0600: bridge.store.files); every connection gets the
`seal_secret` / `open_secret` SQL functions over the key in secrets.key (bridge.store.sealing).

The only module that imports sqlite3 (tests/test_layering.py keeps it so).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from bridge.errors import DatabaseUnavailable, StoreError
from bridge.store.database import BatchFailed, Database, IntegrityError, Job, Row, Tx, check_schema
from bridge.store.files import private_dir, private_file, tighten
from bridge.store.migrations import MIGRATIONS, statements_for
from bridge.store.sealing import PREFIX, SecretBox, load_or_create_key

__all__ = ["CHECKPOINT_EVERY_S", "WRITER_AUTOCHECKPOINT", "SqliteDatabase", "backup"]

log = structlog.get_logger("bridge.store")
T = TypeVar("T")
CHECKPOINT_EVERY_S = 0.25  # a passive WAL checkpoint this often, off the writer's thread
# The writer checkpoints itself only past this many WAL pages (~40 MiB): the safety net if the
# background checkpoints fall behind (they copy pages while the writer goes on committing).
WRITER_AUTOCHECKPOINT = 10_000


class SqliteTx(Tx):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection, fault: Callable[[str], None] | None) -> None:
        self._conn = conn
        self._fault = fault
        self.after_commit = []

    def _control(self, sql: str) -> None:
        self._conn.execute(sql)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as e:
            raise IntegrityError(str(e)) from None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        except sqlite3.IntegrityError as e:  # INSERT ... RETURNING
            raise IntegrityError(str(e)) from None
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            rows: list[Row] = self._conn.execute(sql, params).fetchall()
        except sqlite3.IntegrityError as e:  # UPDATE ... RETURNING
            raise IntegrityError(str(e)) from None
        return rows


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
        conn.execute(f"PRAGMA synchronous={self._synchronous}")  # validated by SqliteDatabase
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        conn.execute(f"PRAGMA wal_autocheckpoint={self._autocheckpoint}")
        # Deleted or moved content is zeroed where that costs no extra I/O: a value rewritten (a
        # secret sealed by a migration) leaves no plaintext behind in the page's free space.
        conn.execute("PRAGMA secure_delete=FAST")
        _install_sealing(conn, self._box)
        self.conn = conn

    async def open(self) -> None:
        await self.run(self._open)

    async def close(self) -> None:
        if self.conn is not None:
            await self.run(self.conn.close)
            self.conn = None
        self._pool.shutdown(wait=True)


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(
        self, path: Path, synchronous: str = "FULL", busy_timeout_ms: int = 5000, key_file: Path | None = None
    ) -> None:
        super().__init__()
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

    async def _open(self) -> None:
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
        check_schema(current, len(MIGRATIONS))
        applied = False
        for version, (description, statements) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            applied = True
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have applied it meanwhile: the write lock makes this check final.
                row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                if ((row[0] if row else None) or 0) >= version:
                    conn.execute("ROLLBACK")
                    continue
                for sql in statements_for(statements, "sqlite"):
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

    async def _close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        for conn in (self._checkpointer, self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._checkpointer = self._reader = self._writer = None

    async def read(self, fn: Callable[[Tx], T]) -> T:
        if self._reader is None:
            raise DatabaseUnavailable("the database is not open")
        reader = self._reader

        def run() -> T:
            assert reader.conn is not None
            reader.conn.execute("BEGIN")
            try:
                return fn(SqliteTx(reader.conn, None))
            finally:
                reader.conn.execute("COMMIT")

        try:
            return await reader.run(run)
        except sqlite3.OperationalError as e:
            raise DatabaseUnavailable(f"database error: {e}", "database_unavailable") from None

    async def _commit(self, jobs: list[Job]) -> None:
        assert self._writer is not None
        await self._writer.run(self._run_batch, jobs)

    def _run_batch(self, jobs: list[Job]) -> None:
        """In the writer thread: BEGIN, each job under a SAVEPOINT, COMMIT.

        A job that raises is rolled back alone. Anything that breaks the transaction itself
        (disk full, I/O error, a lost savepoint) raises BatchFailed: nothing of the batch is
        committed and every caller is told to retry (devices resend; nothing was acked).
        """
        assert self._writer is not None and self._writer.conn is not None
        conn = self._writer.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, job in enumerate(jobs):
                tx = SqliteTx(conn, self.fault)
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
            raise BatchFailed(str(e)) from None


def _classify(e: Exception) -> Exception:
    """Database errors become DatabaseUnavailable (retry later); our own errors pass through."""
    if isinstance(e, sqlite3.OperationalError):
        return DatabaseUnavailable(f"database error: {e}", "database_unavailable")
    return e


def _install_sealing(conn: sqlite3.Connection, box: SecretBox) -> None:
    """Make `seal_secret(kind, text)` and `open_secret(kind, text)` available to SQL on `conn`
    (their contract: bridge.store.sealing)."""

    def seal(kind: str, value: str | None) -> str | None:
        if value is None or value.startswith(PREFIX):
            return value
        return box.seal(kind, value)

    def open_(kind: str, value: str | None) -> str | None:
        return None if value is None else box.open(kind, value)

    conn.create_function("seal_secret", 2, seal)
    conn.create_function("open_secret", 2, open_, deterministic=True)


def backup(path: Path, target: Path) -> int:
    """Copy the SQLite database `path` into the new file `target` (0600) with SQLite's online backup
    API and return its page count: a consistent snapshot of what was committed, taken while a bridge
    keeps writing (a WAL reader: it never blocks the writer). Sealed secrets stay sealed: the copy
    needs the secrets key to be of use. Written to a side file, checked, then renamed into place."""
    if not path.is_file():
        raise StoreError(f"no SQLite database at {path}")
    if target.exists():
        raise StoreError(f"{target} exists already; back up to a new file")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    private_file(partial)
    try:
        src = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
        dst = sqlite3.connect(partial)
        try:
            src.execute("PRAGMA busy_timeout = 10000")
            src.backup(dst)
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            check = dst.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StoreError(f"the backup of {path} failed its check: {check}")
        finally:
            dst.close()
            src.close()
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except sqlite3.Error as e:
        raise StoreError(f"cannot back up {path}: {e}") from None
    finally:
        partial.unlink(missing_ok=True)
    return pages
