"""The PostgreSQL backend: psycopg 3 (sync), each connection owned by one thread.

Why psycopg and threads rather than asyncpg: the store's functions are synchronous functions of
a `Tx` that run a whole transaction (a dozen statements, branching on their results) in one
hop to the database's thread; that is what makes group commit and SAVEPOINT-per-job possible on
SQLite. psycopg 3's sync API keeps those functions unchanged on PostgreSQL; asyncpg would make
every store function (and every service step between two statements) a coroutine, for both
backends. The cost is a thread per connection, which the SQLite backend already pays.

- One writer connection takes the write batches: BEGIN, a SAVEPOINT per job, COMMIT (as SQLite).
  Several bridge processes may write at once; the database's own unique keys (pay-amount slots,
  (device, event id), fingerprints) keep them consistent, and a statement that waits for a row
  another process holds simply waits.
- A few reader connections serve `read()`, each in a REPEATABLE READ READ ONLY transaction (one
  snapshot, as a SQLite read transaction).
- A connection the server closed (restart, pg_terminate_backend) is reopened. One lost while idle
  or in the middle of a read or of a write batch before its COMMIT: the transaction died with it,
  so the read or the batch runs once more on the new connection. One lost while a COMMIT was on
  its way: it may have committed or not, so every job of the batch fails with `DatabaseUnavailable` and
  nothing is retried blindly; a caller told "unavailable" (a phone not acked) sends again, and the
  dedupe keys make the second write a no-op if the first one landed.
- Every session gets `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout`
  (`Timeouts`, from Settings): a statement that waits for a lock another process holds too long,
  or runs too long, fails its job with `DatabaseUnavailable` instead of holding the writer forever.
- Migrations run under `pg_advisory_xact_lock`, one transaction per migration, so instances that
  start together apply each one once; a schema newer than this bridge refuses to start.
- `?` placeholders become `%s` (and a literal `%` becomes `%%`) once per distinct statement.
- Stored signing secrets are sealed as on SQLite, with the same key file (secrets.key, never in the
  database): `seal_secret(kind, text)` / `open_secret(kind, text)` are PL/pgSQL functions over
  pgcrypto (OpenPGP symmetric encryption, AES-256, the kind bound into the plaintext), created at
  start under the migration lock, and each connection hands the key to them in a session setting
  (`paybridge.secrets_key`, set when it connects). Every instance sharing a database needs the same
  key file. A pooler in front must keep sessions (pgbouncer's session mode), not transactions.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg
import structlog
from psycopg import sql as pgsql
from psycopg.rows import RowMaker

from bridge.errors import DatabaseUnavailable, StoreError
from bridge.store.database import (
    BatchFailed,
    Database,
    IntegrityError,
    Job,
    Row,
    Tx,
    check_schema,
    redact_url,
)
from bridge.store.files import private_dir
from bridge.store.migrations import MIGRATIONS, statements_for
from bridge.store.sealing import load_or_create_key

__all__ = [
    "MIGRATION_LOCK",
    "PG_PREFIX",
    "PgRow",
    "PostgresDatabase",
    "Timeouts",
    "create_scratch_schema",
    "drop_scratch_schema",
    "translate",
]

log = structlog.get_logger("bridge.store")
T = TypeVar("T")
MIGRATION_LOCK = 0x5061_7962_7269_6467  # "Paybridg": the advisory lock key migrations hold
READERS = 4
CONNECT_TIMEOUT_S = 10
PG_PREFIX = "pgs1:"  # a value sealed by the functions below (SQLite's are pbs1:, bridge.store.sealing)
KEY_SETTING = "paybridge.secrets_key"
# OpenPGP with a random 256-bit key as the passphrase: one salted SHA-256 (no slow iterated S2K,
# the key is not a password), no compression (it would leak lengths of what is compressed).
_PGP = "cipher-algo=aes256, compress-algo=0, s2k-mode=1, s2k-digest-algo=sha256"
# Made (again) at every start under the migration lock, in the schema the tables live in; {pgp} is
# pgcrypto's schema. Both pass NULL through; seal_secret leaves a sealed value as it is;
# open_secret refuses one that is not sealed, is sealed as another kind, or does not open. Their
# errors are SQLSTATE 39000 (as pgcrypto's "Wrong key"): DatabaseUnavailable, as on SQLite.
_SEALING_FUNCTIONS = """
CREATE OR REPLACE FUNCTION paybridge_secrets_key() RETURNS text LANGUAGE plpgsql STABLE AS $f$
DECLARE k text := current_setting('{setting}', true);
BEGIN
    IF k IS NULL OR k = '' THEN
        RAISE EXCEPTION 'no secrets key on this connection (the bridge sets {setting})' USING ERRCODE = '39000';
    END IF;
    RETURN k;
END $f$;
CREATE OR REPLACE FUNCTION seal_secret(kind text, value text) RETURNS text LANGUAGE plpgsql VOLATILE AS $f$
BEGIN
    IF value IS NULL OR starts_with(value, '{prefix}') THEN
        RETURN value;
    END IF;
    RETURN '{prefix}' || translate(encode({pgp}.pgp_sym_encrypt(
        kind || chr(10) || value, paybridge_secrets_key(), '{options}'), 'base64'), chr(10), '');
END $f$;
CREATE OR REPLACE FUNCTION open_secret(kind text, value text) RETURNS text LANGUAGE plpgsql STABLE AS $f$
DECLARE plain text;
BEGIN
    IF value IS NULL THEN
        RETURN NULL;
    END IF;
    IF NOT starts_with(value, '{prefix}') THEN
        RAISE EXCEPTION 'a stored % is not sealed', kind USING ERRCODE = '39000';
    END IF;
    plain := {pgp}.pgp_sym_decrypt(decode(substr(value, {skip}), 'base64'), paybridge_secrets_key(), '{options}');
    IF NOT starts_with(plain, kind || chr(10)) THEN
        RAISE EXCEPTION 'a stored % was sealed as another kind of secret', kind USING ERRCODE = '39000';
    END IF;
    RETURN substr(plain, length(kind) + 2);
END $f$;
"""


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """`?` placeholders (outside quotes) to psycopg's `%s`; every literal `%` doubled."""
    if "?" not in sql and "%" not in sql:
        return sql
    out: list[str] = []
    quote = ""
    for ch in sql:
        if ch == "%":
            out.append("%%")
        elif quote:
            out.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


class PgRow:
    """A row by position or by column name, like sqlite3.Row (the first column of a name wins)."""

    __slots__ = ("_index", "_names", "_values")

    def __init__(self, names: list[str], index: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._index = index
        self._values = values

    def __getitem__(self, key: int | str, /) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def keys(self) -> list[str]:
        return list(self._names)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PgRow({dict(zip(self._names, self._values, strict=True))!r})"


def _rows(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    names = [c.name for c in cursor.description or ()]
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)

    def make(values: Sequence[Any]) -> PgRow:
        return PgRow(names, index, values)

    return make


Conn = psycopg.Connection[PgRow]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Session limits in seconds (0: none), set on every connection when it opens.

    `statement`: a statement running longer is cancelled; `lock`: a statement waiting longer for a
    lock (a row another instance is updating, a table lock) gives up; `idle_in_transaction`: the
    server ends a session that sits in an open transaction that long (a stuck thread must not hold
    row locks for ever). All three fail the job (or the read) with `DatabaseUnavailable`."""

    statement: float = 30.0
    lock: float = 10.0
    idle_in_transaction: float = 60.0

    def settings(self) -> list[tuple[str, str]]:
        """(GUC, value in ms) pairs for set_config."""
        return [
            ("statement_timeout", str(round(self.statement * 1000))),
            ("lock_timeout", str(round(self.lock * 1000))),
            ("idle_in_transaction_session_timeout", str(round(self.idle_in_transaction * 1000))),
        ]


def _integrity(e: psycopg.IntegrityError) -> IntegrityError:
    d = e.diag
    return IntegrityError(f"{d.message_primary or type(e).__name__} ({d.constraint_name or d.table_name or '?'})")


class PgTx(Tx):
    dialect = "postgresql"

    def __init__(self, conn: Conn, fault: Callable[[str], None] | None) -> None:
        self._conn = conn
        self._fault = fault
        self.after_commit = []

    def _control(self, sql: str) -> None:
        if sql.startswith("ROLLBACK"):
            self.__dict__.pop("_notified", None)  # what notify() sent may be undone: send it again
        self._conn.execute(sql, prepare=False)

    def notify(self, payload: str) -> None:  # cross-instance notifications: see _Listener below
        sent: set[str] = self.__dict__.setdefault("_notified", set())
        if payload not in sent:  # PostgreSQL folds repeats anyway; this saves the round trips
            self._conn.execute(translate(_NOTIFY), (payload,))
            sent.add(payload)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return self._conn.execute(translate(sql), params).rowcount
        except psycopg.IntegrityError as e:
            raise _integrity(e) from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        try:
            with self._conn.cursor() as cur:
                cur.executemany(translate(sql), rows)
        except psycopg.IntegrityError as e:
            raise _integrity(e) from None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        try:
            return self._conn.execute(translate(sql), params).fetchone()
        except psycopg.IntegrityError as e:  # INSERT ... RETURNING
            raise _integrity(e) from None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            rows: list[Row] = list(self._conn.execute(translate(sql), params).fetchall())
        except psycopg.IntegrityError as e:  # UPDATE ... RETURNING
            raise _integrity(e) from None
        return rows


class _Connection:
    """A psycopg connection owned by one thread, reopened when it breaks; work is submitted as functions."""

    def __init__(self, url: str, name: str, key: str, timeouts: Timeouts) -> None:
        self._url = url
        self._key = key  # the sealing key (base64), handed to the session at connect
        self._timeouts = timeouts
        self._name = name
        self.reconnects = 0  # connections opened after the first (the old one broke)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.conn: Conn | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def ensure(self) -> Conn:
        """The open connection, reconnecting first if it is closed or broken (in the owning thread)."""
        conn = self.conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            self.conn = None
            self.reconnects += 1
            log.warning("db.reconnect", connection=self._name)
        extra: dict[str, Any] = {} if "connect_timeout" in self._url else {"connect_timeout": CONNECT_TIMEOUT_S}
        conn = psycopg.connect(self._url, autocommit=True, row_factory=_rows, **extra)
        try:
            for name, value in [(KEY_SETTING, self._key), *self._timeouts.settings()]:
                conn.execute("SELECT set_config(%s, %s, false)", (name, value), prepare=False)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        return conn

    def _close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
            self.conn = None

    async def close(self) -> None:
        await self.run(self._close)
        self._pool.shutdown(wait=True)


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, key_file: Path, *, readers: int = READERS, timeouts: Timeouts | None = None) -> None:
        super().__init__()
        self.url = url
        self.key_file = key_file  # the key sealing stored signing secrets (bridge.store.sealing)
        self.timeouts = timeouts or Timeouts()
        self._key = ""
        self._readers_wanted = readers
        self._writer: _Connection | None = None
        self._readers: list[_Connection] = []
        self._free: asyncio.Queue[_Connection] = asyncio.Queue()
        self._listener: _Listener | None = None

    async def _open(self) -> None:
        if not self.key_file.parent.exists():  # the data dir (default) or wherever the key is kept
            private_dir(self.key_file.parent)
        self._key = base64.b64encode(load_or_create_key(self.key_file)).decode("ascii")
        self._writer = _Connection(self.url, "paybridge-pg-writer", self._key, self.timeouts)
        try:
            try:
                await self._writer.run(self._writer.ensure)
            except psycopg.Error as e:
                raise StoreError(f"cannot connect to PostgreSQL at {redact_url(self.url)}: {e}") from None
            await self._writer.run(self._migrate)
            await self._writer.run(self._check_key)
        except BaseException:
            await self._writer.close()
            self._writer = None
            raise
        for i in range(self._readers_wanted):
            reader = _Connection(self.url, f"paybridge-pg-reader{i}", self._key, self.timeouts)
            self._readers.append(reader)
            self._free.put_nowait(reader)

    def _migrate(self) -> None:
        assert self._writer is not None
        conn = self._writer.ensure()
        functions_made = False
        while True:
            version, description = 0, "schema version table"
            try:
                conn.execute("BEGIN")
                # Another instance may hold the lock for a long migration: wait for it, not lock_timeout.
                conn.execute("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0", prepare=False)
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
                row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
                current = int(row[0] or 0) if row is not None else 0
                check_schema(current, len(MIGRATIONS))
                if not functions_made:  # before any migration: one of them seals secrets
                    description = "sealing functions (pgcrypto: a superuser may have to CREATE EXTENSION pgcrypto)"
                    _create_sealing_functions(conn)
                    functions_made = True
                if current == len(MIGRATIONS):
                    conn.execute("COMMIT")
                    return
                version = current + 1
                description, statements = MIGRATIONS[current]
                for sql in statements_for(statements, "postgresql"):
                    conn.execute(sql)
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                conn.execute("COMMIT")
                log.info("db.migrated", version=version, description=description)
            except StoreError:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            except psycopg.Error as e:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise StoreError(f"migration {version} ({description}) failed: {e}") from None

    def _check_key(self) -> None:
        """Refuse to start with a key that does not open the stored secrets (a wrong or replaced
        secrets.key): better than failing every event that would be signed with them."""
        assert self._writer is not None
        conn = self._writer.ensure()
        try:
            conn.execute("SELECT open_secret('merchants.webhook_secret', webhook_secret) FROM merchants LIMIT 1")
        except psycopg.Error:
            raise StoreError(
                f"the secrets key {self.key_file} does not open the webhook secrets stored in"
                f" {redact_url(self.url)}; restore the key file that belongs to this database"
                " (every instance on one database needs the same key)"
            ) from None

    async def listen(
        self, on_message: Callable[[str], None], on_gap: Callable[[], None], name: str = "paybridge-listen"
    ) -> None:
        await self.unlisten()
        self._listener = _Listener(self.url, asyncio.get_running_loop(), on_message, on_gap, name)
        await self._listener.start()

    async def unlisten(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            await listener.stop()

    async def _close(self) -> None:
        for reader in self._readers:
            await reader.close()
        self._readers = []
        self._free = asyncio.Queue()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @property
    def reconnects(self) -> int:
        """Connections reopened after they broke (writer and readers): for tests and figures."""
        conns = [*self._readers, *([self._writer] if self._writer is not None else [])]
        return sum(c.reconnects for c in conns)

    async def read(self, fn: Callable[[Tx], T]) -> T:
        if not self._readers:
            raise DatabaseUnavailable("the database is not open")
        reader = await self._free.get()

        def once() -> T:
            conn = _begin(reader, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            try:
                value = fn(PgTx(conn, None))
            finally:  # read only: COMMIT and ROLLBACK end it alike
                if not conn.broken:
                    conn.execute("ROLLBACK", prepare=False)
            return value

        def run() -> T:
            try:
                return once()
            except psycopg.OperationalError:
                if reader.conn is None or not reader.conn.broken:
                    raise  # a timeout or a cancel: the connection is fine, the answer is no
            # The connection was lost mid-read: a read changes nothing, so run it again on a new one.
            return once()

        try:
            return await reader.run(run)
        except psycopg.OperationalError as e:
            raise DatabaseUnavailable(f"database error: {e}", "database_unavailable") from None
        finally:
            self._free.put_nowait(reader)

    async def _commit(self, jobs: list[Job]) -> None:
        assert self._writer is not None
        await self._writer.run(self._run_batch, jobs)

    def _run_batch(self, jobs: list[Job]) -> None:
        """In the writer thread: BEGIN, each job under a SAVEPOINT, COMMIT (see SqliteDatabase._run_batch).

        The control statements ride together (`RELEASE j0; SAVEPOINT j1` is one round trip), so a
        batch of one job costs its own statements plus two round trips.

        A connection lost before COMMIT was sent took its transaction with it (the server rolls back
        a session it ends): the batch runs once more on a new connection. One lost while COMMIT was
        on its way may or may not have committed: every job fails (BatchFailed), none is acked.
        """
        assert self._writer is not None
        for attempt in (1, 2):
            try:
                conn = self._run_jobs(jobs)
                break
            except psycopg.Error as e:
                conn_now = self._writer.conn
                if conn_now is not None and not conn_now.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn_now.execute("ROLLBACK", prepare=False)
                    raise BatchFailed(str(e)) from None
                if attempt == 2:
                    raise BatchFailed(str(e)) from None
                log.warning("db.batch_rerun", jobs=len(jobs), error=str(e).strip())
        try:
            conn.execute(f"RELEASE j{len(jobs) - 1}; COMMIT", prepare=False)
        except psycopg.Error as e:
            # The connection may have broken after the server committed and before we heard it: the
            # outcome is unknown. The jobs are failed (not acked); what was not committed is sent
            # again by its caller, and what was is recognised by the dedupe keys when it comes back.
            if conn.broken:
                log.warning("db.commit_outcome_unknown", jobs=len(jobs), error=str(e).strip())
            else:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK", prepare=False)
            raise BatchFailed(str(e)) from None

    def _run_jobs(self, jobs: list[Job]) -> Conn:
        """BEGIN and every job under its savepoint (not committed); the connection they ran on."""
        assert self._writer is not None
        conn = _begin(self._writer, "BEGIN; SAVEPOINT j0")
        for i, job in enumerate(jobs):
            if i:
                conn.execute(f"RELEASE j{i - 1}; SAVEPOINT j{i}", prepare=False)
            tx = PgTx(conn, self.fault)
            job.ok, job.value, job.after = False, None, []
            try:
                job.value = job.fn(tx)
                job.ok = True
                job.after = tx.after_commit
            except Exception as e:  # the job failed: undo only its own work
                conn.execute(f"ROLLBACK TO j{i}", prepare=False)
                job.ok, job.value = False, _classify(e)
        return conn


def create_scratch_schema(url: str, prefix: str) -> tuple[str, str]:
    """A new, empty schema `<prefix><random>` on the server at `url`: (a URL whose search_path puts
    the bridge's tables there, its name). For benchmarks: several instances share it."""
    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(pgsql.SQL("CREATE SCHEMA {}").format(pgsql.Identifier(name)))
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={name}')}", name


def drop_scratch_schema(url: str, name: str) -> None:
    """Drop a schema `create_scratch_schema` made, with everything in it."""
    with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute(pgsql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pgsql.Identifier(name)))


def _create_sealing_functions(conn: Conn) -> None:
    """seal_secret / open_secret (and the key getter they share) in the tables' schema, inside the
    caller's transaction; pgcrypto is created in `public` unless the database has it already."""
    row = conn.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
        " WHERE e.extname = 'pgcrypto'"
    ).fetchone()
    if row is None:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto SCHEMA public")
        schema = "public"
    else:
        schema = str(row[0])
    body = _SEALING_FUNCTIONS.format(
        setting=KEY_SETTING,
        prefix=PG_PREFIX,
        skip=len(PG_PREFIX) + 1,
        options=_PGP,
        pgp=pgsql.Identifier(schema).as_string(conn),
    )
    conn.execute(body, prepare=False)


def _begin(owner: _Connection, sql: str) -> Conn:
    """Open a transaction on the owner's connection. One the server closed while it sat idle
    (a restart, pg_terminate_backend) is replaced once: nothing has run on it yet, so it is safe."""
    conn = owner.ensure()
    try:
        conn.execute(sql, prepare=False)
    except psycopg.OperationalError:
        if not conn.broken:
            raise
        conn = owner.ensure()
        conn.execute(sql, prepare=False)
    return conn


def _classify(e: Exception) -> Exception:
    """Database errors a retry may cure (a lost connection, a deadlock) become DatabaseUnavailable."""
    if isinstance(e, psycopg.OperationalError):
        return DatabaseUnavailable(f"database error: {e}", "database_unavailable")
    return e


# -- Cross-instance notifications: LISTEN/NOTIFY ------------------------------------------------
# (Kept apart from the connection handling above.) `PgTx.notify` runs pg_notify inside the job's
# transaction, so a notification is delivered only if the change commits (and dropped with a job
# whose savepoint is rolled back); PostgreSQL folds identical payloads of one transaction into one.
# The channel is named after the schema the tables live in, so bridges on other schemas of the
# same database hear nothing of ours. One dedicated connection per instance listens, in its own
# thread; it is reopened whenever it breaks, and each (re)connection is reported as a gap.

_CHANNEL = "left('paybridge.' || current_schema(), 63)"  # an identifier is at most 63 bytes
_NOTIFY = f"SELECT pg_notify({_CHANNEL}, ?)"
LISTEN_POLL_S = 0.5  # how often the listening thread looks up from its socket (to stop, to probe)
LISTEN_PROBE_S = 5.0  # a round trip this often: a connection that died silently is noticed
LISTEN_RETRY_S = 1.0  # wait between reconnection attempts


class _Listener:
    """A thread holding one LISTEN connection; payloads go to the event loop in arrival order."""

    def __init__(
        self,
        url: str,
        loop: asyncio.AbstractEventLoop,
        on_message: Callable[[str], None],
        on_gap: Callable[[], None],
        name: str,
    ) -> None:
        self._url = url
        self._name = name[:63]  # the connection's application_name: which instance listens
        self._loop = loop
        self._on_message = on_message
        self._on_gap = on_gap
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paybridge-pg-listen", daemon=True)

    async def start(self) -> None:
        """Start listening; returns once the first LISTEN is in place (or after a connect timeout,
        the thread going on trying: nothing is lost meanwhile that a gap does not report)."""
        self._thread.start()
        await asyncio.to_thread(self._ready.wait, CONNECT_TIMEOUT_S)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.to_thread(self._thread.join, CONNECT_TIMEOUT_S + LISTEN_POLL_S + 1)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us: we are stopping
            self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn: psycopg.Connection[Any] | None = None
            try:
                extra: dict[str, Any] = {} if "connect_timeout" in self._url else {"connect_timeout": CONNECT_TIMEOUT_S}
                conn = psycopg.connect(self._url, autocommit=True, application_name=self._name, **extra)
                row = conn.execute(f"SELECT {_CHANNEL}").fetchone()
                channel = str(row[0]) if row is not None else "paybridge."
                conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
                self._post(self._on_gap)  # anything sent before this LISTEN was not heard
                self._ready.set()
                probed = time.monotonic()
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=LISTEN_POLL_S):
                        self._post(self._on_message, note.payload)
                    if time.monotonic() - probed >= LISTEN_PROBE_S:
                        conn.execute("SELECT 1")
                        probed = time.monotonic()
            except psycopg.Error as e:
                if not self._stop.is_set():
                    log.warning("db.listen_lost", error=str(e).strip().splitlines()[0] if str(e).strip() else repr(e))
                    self._stop.wait(LISTEN_RETRY_S)
            finally:
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
