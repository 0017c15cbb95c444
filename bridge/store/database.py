"""One database API over SQLite and PostgreSQL, chosen by URL (`open_database`).

Writes go through `Database.write(fn)`: `fn(tx)` is a plain function that runs inside a
transaction in the database's own thread, and its result is returned only after COMMIT.

Group commit: a single writer task takes every job waiting in the queue and hands the whole
batch to the writer thread in ONE hop: BEGIN, each job under its own SAVEPOINT (a failing job is
rolled back alone and gets its exception), COMMIT. So 100 concurrent reports cost one thread
hop and one fsync instead of 100 of each, and no caller hears "done" before its data is durable.

This is aiosqlite's model (one thread per connection) taken one step further: whole transactions,
not single statements, cross the thread boundary. Reads run the same way on other connections.
Both backends keep this shape, so the store's functions stay plain synchronous functions of a `Tx`:

- `bridge.store.sqlite`: one writer connection, one reader (WAL readers never block the writer)
  and a checkpointer, each owned by a thread.
- `bridge.store.postgres`: psycopg 3 (sync), one writer connection and a few readers, each
  owned by a thread; `?` placeholders are translated there.

Nothing outside the backend modules knows which driver is underneath: rows are `Row`s (index
and column-name access), a violated constraint is our `IntegrityError`, a database that is down
or busy is `DatabaseUnavailable`. SQL in `bridge/store/*` is written once in the dialect both share; a
store function that must differ asks `tx.dialect`.

On PostgreSQL a failed statement aborts the transaction until its savepoint is rolled back, so
a job cannot catch `IntegrityError` and go on (except around a `tx.savepoint()` block): write
`INSERT ... ON CONFLICT DO NOTHING` and look at the row count instead (the store does).

Stored signing secrets are sealed with a key kept outside the database: both backends give SQL
`seal_secret(kind, text)` and `open_secret(kind, text)` (bridge.store.sealing).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

import structlog

from bridge.errors import DatabaseUnavailable, StoreError

__all__ = [
    "Database",
    "IntegrityError",
    "Row",
    "Tx",
    "drop_scratch_schema",
    "open_database",
    "redact_url",
    "scratch_schema",
    "sqlite_path",
]

log = structlog.get_logger("bridge.store")
T = TypeVar("T")
MAX_BATCH = 512


class Row(Protocol):
    """A result row: by position (`row[0]`) or by column name (`row["id"]`)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> list[str]: ...
    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class IntegrityError(StoreError):
    """The database refused a statement: a unique key, foreign key or NOT NULL constraint."""


class Tx:
    """A connection inside a transaction, used from the database thread. SQL in `bridge/store/*` only.

    `?` is the placeholder on every backend. Each backend subclasses this with its driver calls.
    """

    dialect: str = ""  # "sqlite" or "postgresql"
    after_commit: list[Callable[[], None]]
    _fault: Callable[[str], None] | None
    _savepoints: int = 0  # savepoint() blocks opened so far (their names: sp1, sp2, ...)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; return the number of rows changed."""
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        raise NotImplementedError

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _control(self, sql: str) -> None:
        """Run a transaction-control statement (SAVEPOINT, ROLLBACK TO, RELEASE)."""
        raise NotImplementedError

    def notify(self, payload: str) -> None:
        """Tell every other instance listening on this database (`Database.listen`) `payload`, when
        and only if this transaction commits (undone with a savepoint block that is undone).

        Small payloads (ids): listeners read the rest from the database. SQLite has no other
        instances, so nothing is sent; the caller tells its own process in `after_commit`."""

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block under its own SAVEPOINT: if it raises, its work alone is rolled back (and the
        exception goes on); the rest of the transaction stands. For sweeps, so one bad row cannot
        stop the others. After-commit callbacks the undone block registered are dropped with it."""
        self._savepoints += 1
        name = f"sp{self._savepoints}"
        callbacks = len(self.after_commit)
        self._control(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            del self.after_commit[callbacks:]  # what the undone work announced never happened
            self._control(f"ROLLBACK TO {name}")
            self._control(f"RELEASE {name}")
            raise
        self._control(f"RELEASE {name}")

    def checkpoint(self, name: str) -> None:
        """A named point between the steps of a transaction where tests may inject a failure."""
        if self._fault is not None:
            self._fault(name)


@dataclass
class Job:
    fn: Callable[[Tx], Any]
    future: asyncio.Future[Any]
    ok: bool = False
    value: Any = None
    after: list[Callable[[], None]] = field(default_factory=list)


class BatchFailed(Exception):
    """The transaction itself broke (disk full, I/O error, lost connection): nothing was committed."""


class Database:
    """What services hold: `write`, `read`, `open`, `close`. A backend supplies the thread side."""

    dialect: str = ""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Tests set this to raise at a named checkpoint (crash-atomicity); never set in production.
        self.fault: Callable[[str], None] | None = None
        self.commits = 0  # group commits made
        self.writes = 0  # write jobs committed or failed by them (writes / commits = batching)

    # -- what a backend provides ------------------------------------------------------------
    async def _open(self) -> None:
        """Connect and migrate."""
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _commit(self, jobs: list[Job]) -> None:
        """Run the batch in one transaction, each job under its own SAVEPOINT (a failing job is rolled back
        alone and keeps its exception as its value); raise BatchFailed if the transaction did not commit."""
        raise NotImplementedError

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` against a consistent snapshot (a read transaction) in a reader thread."""
        raise NotImplementedError

    async def listen(
        self, on_message: Callable[[str], None], on_gap: Callable[[], None], name: str = "paybridge-listen"
    ) -> None:
        """Hear other instances' `Tx.notify` payloads: `on_message(payload)` on the event loop, in
        commit order per sender; `on_gap()` whenever the listening connection was (re)made, since
        payloads sent while it was down are lost (listeners then re-read what they care about).
        `name` tells the listening connection apart (PostgreSQL's application_name). SQLite: one
        process, nothing to hear. Stopped by `unlisten` (and `close`)."""

    async def unlisten(self) -> None:
        """Stop what `listen` started."""

    # -- shared ----------------------------------------------------------------------------
    async def open(self) -> None:
        await self._open()
        self._task = asyncio.create_task(self._write_loop(), name="db-writer")

    async def close(self) -> None:
        await self.unlisten()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(DatabaseUnavailable("the bridge is shutting down"))
        await self._close()

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn(tx)` in a write transaction (in the database thread); return its result after COMMIT."""
        if self._task is None or self._task.done():
            raise DatabaseUnavailable("the database is not open")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(Job(fn, fut))
        return await asyncio.shield(fut)

    async def _write_loop(self) -> None:
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < MAX_BATCH and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            try:
                await self._commit(jobs)
            except asyncio.CancelledError:
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(DatabaseUnavailable("the bridge is shutting down"))
                raise
            except BatchFailed as e:
                log.warning("db.batch_failed", jobs=len(jobs), error=str(e))
                err = DatabaseUnavailable(f"the database refused the write: {e}", "database_unavailable")
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


def check_schema(current: int, known: int) -> None:
    """Refuse to run on a schema newer than the migrations this bridge knows."""
    if current > known:
        raise StoreError(
            f"the database schema is version {current}, newer than this bridge knows ({known}); upgrade paybridge"
        )


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///absolute/path` or `sqlite:relative/path` URL (the rest of it, verbatim)."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite://") :]
    if url.startswith("sqlite:") and not url.startswith("sqlite://") and len(url) > len("sqlite:"):
        return url[len("sqlite:") :]
    raise ValueError("a SQLite URL is sqlite:///absolute/path.db or sqlite:relative/path.db")


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced by ***: safe for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def open_database(
    url: str,
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 5000,
    key_file: Path | None = None,
    pg_timeouts: tuple[float, float, float] = (30.0, 10.0, 60.0),
) -> Database:
    """The backend for a URL: `sqlite:///path` or `postgresql://...` (not yet opened).

    `key_file` holds the key that seals stored signing secrets (bridge.store.sealing; created on
    first use); by default `secrets.key` next to a SQLite file, and required for PostgreSQL (every
    instance sharing that database needs the same key). `synchronous` and `busy_timeout_ms` apply
    to SQLite only; `pg_timeouts` (statement, lock, idle in transaction; seconds, 0: none) to
    PostgreSQL only.
    """
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from bridge.store.sqlite import SqliteDatabase

        return SqliteDatabase(Path(sqlite_path(url)), synchronous, busy_timeout_ms, key_file)
    if scheme in ("postgresql", "postgres"):
        try:
            from bridge.store.postgres import PostgresDatabase
        except ImportError as e:  # pragma: no cover - the bridge extra installs psycopg
            raise StoreError(f"PostgreSQL needs psycopg 3: pip install 'paybridge[bridge]' ({e})") from None
        if key_file is None:
            raise ValueError("a PostgreSQL database needs key_file: the secrets key every instance shares")
        from bridge.store.postgres import Timeouts

        return PostgresDatabase(url, key_file, timeouts=Timeouts(*pg_timeouts))
    raise ValueError(f"unknown database URL scheme {scheme!r}: use sqlite:///path or postgresql://...")


def scratch_schema(url: str, prefix: str = "paybridge_scratch_") -> tuple[str, str]:
    """A new, empty schema on the PostgreSQL server at `url` (benchmarks): (its URL, its name)."""
    from bridge.store.postgres import create_scratch_schema

    return create_scratch_schema(url, prefix)


def drop_scratch_schema(url: str, name: str) -> None:
    """Drop a schema `scratch_schema` made."""
    from bridge.store.postgres import drop_scratch_schema as drop

    drop(url, name)
