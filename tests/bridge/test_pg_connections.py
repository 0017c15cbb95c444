"""PostgreSQL connections that break or wait: cut by the server, held up by another session's lock,
stuck in a transaction. The store reconnects and goes on; a write whose COMMIT may not have happened
is never reported as committed; a wait longer than the session limits fails with `DatabaseUnavailable`.

PostgreSQL only (real pg_terminate_backend from a second connection): at
`PAYBRIDGE_TEST_DATABASE_URL` or the local default, skipped with a message when unreachable.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psycopg
import pytest

from bridge.config import Settings
from bridge.errors import ConfigError, DatabaseUnavailable
from bridge.store.database import Tx
from bridge.store.postgres import PostgresDatabase, Timeouts
from bridge.web.app import CTX, create_app
from tests import pg
from tests.harness import eventually, make_settings

Opener = Callable[[Timeouts], Awaitable[PostgresDatabase]]


@pytest.fixture
def app_name() -> str:
    """An application_name only this test's connections carry: what pg_terminate_backend aims at."""
    return f"pbconn_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def url(app_name: str) -> str:
    """A fresh schema, with a `probe` table (and a trigger that kills its own session at COMMIT)."""
    base = pg.fresh_database()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
        conn.execute(
            "CREATE FUNCTION die_at_commit() RETURNS trigger LANGUAGE plpgsql AS $f$"
            " BEGIN IF NEW.v = 666 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NULL; END $f$"
        )
        conn.execute(
            "CREATE CONSTRAINT TRIGGER die AFTER INSERT ON probe DEFERRABLE INITIALLY DEFERRED"
            " FOR EACH ROW EXECUTE FUNCTION die_at_commit()"
        )
    return f"{base}&application_name={app_name}"


@pytest.fixture
async def opened(url: str, tmp_path: Path) -> AsyncIterator[Opener]:
    """Open PostgresDatabase objects on the test's schema; all are closed at the end."""
    dbs: list[PostgresDatabase] = []

    async def open_one(timeouts: Timeouts) -> PostgresDatabase:
        db = PostgresDatabase(url, tmp_path / "secrets.key", readers=1, timeouts=timeouts)
        await db.open()
        dbs.append(db)
        return db

    yield open_one
    for db in dbs:
        await db.close()


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.server_url(), autocommit=True)


async def _terminate(app_name: str, waiting_on: str = "") -> int:
    """pg_terminate_backend on this test's connections (only those waiting on `waiting_on`, a
    wait_event_type or wait_event, if given); how many were cut."""

    def run() -> int:
        with _admin() as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND pid <> pg_backend_pid()"
                " AND (%s = '' OR wait_event_type = %s OR wait_event = %s)",
                (app_name, waiting_on, waiting_on, waiting_on),
            ).fetchall()
        return len(rows)

    return await asyncio.to_thread(run)


def _insert(id_: int, v: int) -> Callable[[Tx], int]:
    return lambda tx: tx.execute("INSERT INTO probe (id, v) VALUES (?, ?)", (id_, v))


def _count(tx: Tx) -> int:
    row = tx.one("SELECT COUNT(*) FROM probe")
    assert row is not None
    return int(row[0])


async def test_connections_cut_while_idle_are_reopened(opened: Opener, app_name: str) -> None:
    """After pg_terminate_backend of every idle connection (writer and reader), the next write and
    read succeed on new connections."""
    db = await opened(Timeouts())
    await db.write(_insert(1, 1))
    assert await db.read(_count) == 1
    assert await _terminate(app_name) == 2
    await db.write(_insert(2, 2))
    assert await db.read(_count) == 2
    assert db.reconnects == 2


async def test_a_write_cut_before_its_commit_runs_again_on_a_new_connection(opened: Opener, app_name: str) -> None:
    """The writer's connection cut while its batch waits on a row lock (before COMMIT: the server
    rolled it back): the batch runs again on a new connection and commits once, and a second cut
    of the rerun fails it with DatabaseUnavailable with nothing of it stored."""
    db = await opened(Timeouts(lock=60))
    await db.write(_insert(1, 1))
    with _admin() as holder:
        holder.execute(f"SET search_path = {_schema(db.url)}")
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM probe WHERE id = 1 FOR UPDATE")

        def bump(tx: Tx) -> int:
            tx.execute("INSERT INTO probe (id, v) VALUES (5, 5)")
            return tx.execute("UPDATE probe SET v = 10 WHERE id = 1")

        write = asyncio.create_task(db.write(bump))
        await eventually(lambda: _terminate(app_name, "Lock"), lambda n: n == 1)
        await eventually(lambda: _terminate(app_name, "Lock"), lambda n: n == 1)  # the rerun, cut too
        with pytest.raises(DatabaseUnavailable):
            await write
        write = asyncio.create_task(db.write(bump))
        await eventually(lambda: _terminate(app_name, "Lock"), lambda n: n == 1)  # once: the rerun waits
        holder.execute("ROLLBACK")
        assert await write == 1
    assert db.reconnects == 3
    assert await db.read(lambda tx: [tuple(r) for r in tx.all("SELECT id, v FROM probe ORDER BY id")]) == [
        (1, 10),
        (5, 5),
    ]


async def test_a_commit_whose_answer_is_lost_is_not_reported_committed(opened: Opener) -> None:
    """The session dies during COMMIT (a deferred trigger terminates its own backend): the write is
    reported DatabaseUnavailable, not done, and the writer goes on with the next one."""
    db = await opened(Timeouts())
    with pytest.raises(DatabaseUnavailable):
        await db.write(_insert(1, 666))
    await db.write(_insert(2, 2))
    assert await db.read(_count) == 1
    assert db.reconnects == 1


async def test_a_read_cut_mid_query_runs_again_on_a_new_connection(opened: Opener, app_name: str) -> None:
    """A reader's connection cut in the middle of a read: the read runs again on a new connection
    and returns its answer instead of failing."""
    db = await opened(Timeouts())
    await db.write(_insert(1, 1))
    runs: list[int] = []

    def slow_count(tx: Tx) -> int:
        runs.append(1)
        if len(runs) == 1:
            tx.one("SELECT pg_sleep(30)")
        return _count(tx)

    read = asyncio.create_task(db.read(slow_count))
    await eventually(lambda: _terminate(app_name, "PgSleep"), lambda n: n == 1)
    assert await read == 1
    assert len(runs) == 2 and db.reconnects == 1


async def test_a_lock_held_elsewhere_fails_the_write_after_lock_timeout(opened: Opener) -> None:
    """A row locked by another session: a write that needs it fails with DatabaseUnavailable once lock_timeout
    has passed (it does not hang), other writes of the same batch commit, and once the lock is gone
    the write goes through."""
    db = await opened(Timeouts(lock=0.3))
    await db.write(_insert(1, 1))
    with _admin() as holder:
        holder.execute(f"SET search_path = {_schema(db.url)}")
        holder.execute("BEGIN")
        holder.execute("SELECT * FROM probe WHERE id = 1 FOR UPDATE")
        started = time.monotonic()
        outcomes = await asyncio.gather(
            db.write(lambda tx: tx.execute("UPDATE probe SET v = 10 WHERE id = 1")),
            db.write(_insert(2, 2)),
            return_exceptions=True,
        )
        waited = time.monotonic() - started
        holder.execute("ROLLBACK")
    assert isinstance(outcomes[0], DatabaseUnavailable)
    assert outcomes[1] == 1
    assert waited >= 0.3  # it waited for the lock, then gave up (lock_timeout), not at once
    assert await db.write(lambda tx: tx.execute("UPDATE probe SET v = 10 WHERE id = 1")) == 1
    assert db.reconnects == 0


async def test_a_statement_running_past_statement_timeout_is_cancelled(opened: Opener) -> None:
    """A read running past statement_timeout fails with DatabaseUnavailable; the connection stays usable."""
    db = await opened(Timeouts(statement=0.2))
    with pytest.raises(DatabaseUnavailable):
        await db.read(lambda tx: tx.one("SELECT pg_sleep(5)"))
    assert await db.read(_count) == 0
    assert db.reconnects == 0


async def test_a_transaction_left_idle_is_ended_by_the_server(opened: Opener) -> None:
    """A write job that sits idle inside its transaction past idle_in_transaction_session_timeout is
    failed with DatabaseUnavailable (the server ended the session; its row is not stored), and the next
    write commits on a new connection."""
    db = await opened(Timeouts(idle_in_transaction=0.3))

    def stuck(tx: Tx) -> int:
        tx.execute("INSERT INTO probe (id, v) VALUES (1, 1)")
        time.sleep(1.5)  # the writer thread stuck with the transaction open
        return tx.execute("INSERT INTO probe (id, v) VALUES (2, 2)")

    with pytest.raises(DatabaseUnavailable):
        await db.write(stuck)
    await db.write(_insert(3, 3))
    assert await db.read(lambda tx: [r[0] for r in tx.all("SELECT id FROM probe")]) == [3]


async def test_the_session_limits_are_set_on_every_connection(opened: Opener) -> None:
    """statement_timeout, lock_timeout and idle_in_transaction_session_timeout are what Timeouts says."""
    db = await opened(Timeouts(statement=12, lock=3.5, idle_in_transaction=45))

    def limits(tx: Tx) -> list[str]:
        names = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
        return [str(tx.one("SELECT current_setting(?)", (n,))[0]) for n in names]  # type: ignore[index]

    assert await db.read(limits) == ["12s", "3500ms", "45s"]
    assert await db.write(limits) == ["12s", "3500ms", "45s"]


def test_settings_carry_the_limits_to_the_database(tmp_path: Path) -> None:
    """The pg_* settings reach the PostgreSQL backend the app opens; a negative one is refused."""
    settings = make_settings(
        tmp_path,
        database_url="postgresql://nobody@127.0.0.1:1/none",
        pg_statement_timeout=7,
        pg_lock_timeout=2,
        pg_idle_in_transaction_timeout=9,
    )
    db = create_app(settings)[CTX].db
    assert isinstance(db, PostgresDatabase)
    assert db.timeouts == Timeouts(statement=7, lock=2, idle_in_transaction=9)
    with pytest.raises(ConfigError, match="PAYBRIDGE_PG_LOCK_TIMEOUT"):
        Settings(pg_lock_timeout=-1)


def _schema(url: str) -> str:
    """The schema tests/pg.py put in the URL's search_path option."""
    return url.split("search_path%3D", 1)[1].split("&", 1)[0]
