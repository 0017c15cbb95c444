"""The store's guarantees, on every backend: SQLite files and PostgreSQL schemas (tests/pg.py).

Where a test needs "several bridge processes", it opens several Database objects on one database:
each has its own connections and writer thread, exactly as a second `paybridge serve` would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bridge.core.models.account import Account
from bridge.core.models.compat import CompatOrder, Shop
from bridge.core.models.delivery import Delivery, DeliveryAttempt, Outgoing
from bridge.core.models.endpoint import Endpoint
from bridge.core.models.ids import AccountId, DeliveryId, DeviceId, EndpointId, InstanceId, MerchantId, PaymentId
from bridge.core.models.merchant import Merchant, MerchantUsage
from bridge.core.models.order import Order
from bridge.core.models.payment import Payment
from bridge.core.states import DeliveryStatus, OrderStatus, PaymentStatus
from bridge.errors import DatabaseUnavailable, StoreError
from bridge.store import compat, deliveries, endpoints, events, merchants, orders, payments
from bridge.store.database import Database, IntegrityError, Tx, open_database
from bridge.store.migrations import MIGRATIONS, statements_for
from tests import pg

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path.absolute().as_posix()}/store.db"
    return pg.fresh_database()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The secrets key the test's "bridge processes" share (bridge.store.sealing), made on first open."""
    return tmp_path / "secrets.key"


@pytest.fixture
async def opened(key_file: Path) -> AsyncIterator[Callable[[str], Awaitable[Database]]]:
    """Open databases (each one a "bridge process"); all are closed at the end."""
    dbs: list[Database] = []

    async def open_one(url: str) -> Database:
        db = open_database(url, key_file=key_file)
        await db.open()
        dbs.append(db)
        return db

    yield open_one
    for db in dbs:
        await db.close()


async def _merchant(db: Database) -> str:
    def op(tx: Tx) -> str:
        merchants.insert_merchant(tx, id="m1", name="shop", api_key_hash="h1", webhook_secret="s", now=0)
        tx.execute(
            "INSERT INTO devices (id, merchant_id, name, public_key, channels, created_at)"
            " VALUES ('d1', 'm1', 'phone', 'k', '[]', 0)"
        )
        return "m1"

    return await db.write(op)


def _count(sql: str) -> Callable[[Tx], int]:
    def op(tx: Tx) -> int:
        row = tx.one(sql)
        assert row is not None
        return int(row[0])

    return op


async def test_rows_read_by_position_and_by_name(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """A row answers row[0], row["column"] and keys() the same way on every backend."""
    db = await opened(url)
    await _merchant(db)
    row = await db.read(lambda tx: tx.one("SELECT id, name, created_at FROM merchants WHERE id = ?", ("m1",)))
    assert row is not None
    assert row["id"] == row[0] == "m1" and row["created_at"] == 0
    assert row.keys()[:2] == ["id", "name"] and len(row) == len(row.keys())
    assert list(row)[:2] == ["m1", "shop"]


async def test_pay_amount_slots_are_unique_under_concurrency(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """Two bridge processes hand out pay amounts for one slot at once: the database's key keeps every
    amount held by one order only, and when the ten amounts are gone the rest are told so."""
    first, second = await opened(url), await opened(url)
    await _merchant(first)
    amounts = list(range(1000, 990, -1))

    def create(n: int) -> Callable[[Tx], int | None]:
        def op(tx: Tx) -> int | None:
            order_id = f"o{n}"
            taken = orders.slots_taken(tx, ["slot"], amounts)
            for amount in amounts:
                if ("slot", amount) in taken:
                    continue
                _new_order(tx, order_id, pay=amount)
                if orders.lock_amount(tx, "slot", amount, order_id):
                    return amount
                tx.execute("DELETE FROM orders WHERE id = ?", (order_id,))  # lost the race: try the next amount
            return None

        return op

    async def create_retrying(n: int) -> int | None:
        db = first if n % 2 else second
        for _ in range(20):  # a deadlock between the two processes is reported as DatabaseUnavailable: retry
            try:
                return await db.write(create(n))
            except DatabaseUnavailable:
                await asyncio.sleep(0.01)
        raise AssertionError("never committed")

    got = await asyncio.gather(*(create_retrying(n) for n in range(16)))
    held = [a for a in got if a is not None]
    assert sorted(held) == sorted(amounts), got
    assert got.count(None) == 6
    assert await first.read(_count("SELECT COUNT(*) FROM amount_locks")) == 10
    assert await second.read(_count("SELECT COUNT(DISTINCT pay_amount_cents) FROM orders")) == 10


async def test_a_delivery_is_claimed_by_one_process_until_its_lease_runs_out(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """Two bridge processes claim the same due deliveries at once: each is held by one of them; a
    live lease keeps the other out (a delivery committed already claimed, too), renewing is the
    holder's alone, and a lease that ran out, a release or a recorded attempt frees it."""
    first, second = await opened(url), await opened(url)
    await _merchant(first)
    ids = [f"dlv{i}" for i in range(40)]

    def insert(tx: Tx) -> None:
        targets: list[tuple[str, str | None, str]] = [(d, None, "http://127.0.0.1/hook") for d in ids]
        events.insert_event(tx, event_id="e1", merchant_id="m1", type="order.paid", body="{}", now=0, targets=targets)
        events.insert_event(
            tx,
            event_id="e2",
            merchant_id="m1",
            type="order.paid",
            body="{}",
            now=0,
            targets=[("fresh", None, "http://127.0.0.1/hook")],
            claim=("A", 1000),
        )

    await first.write(insert)

    async def claim(db: Database, by: str, now: int, some: list[str]) -> dict[DeliveryId, int]:
        return await db.write(lambda tx: deliveries.claim(tx, some, by=InstanceId(by), now=now, until=now + 1000))

    got = await asyncio.gather(
        *(claim((first, second)[n % 2], "AB"[n % 2], 10, ids[(n * 7) % 40 :] + ids[: (n * 7) % 40]) for n in range(8))
    )
    holders: dict[str, list[str]] = {}
    for n, claimed in enumerate(got):
        for d in claimed:
            holders.setdefault(d, []).append("AB"[n % 2])
    assert sorted(holders) == sorted(ids) and all(len(h) == 1 for h in holders.values()), holders
    assert await claim(second, "B", 500, ["fresh"]) == {}  # committed claimed by A, its lease still runs

    db_of = {"A": first, "B": second}
    kept = ids[0]
    holder = holders[kept][0]
    other = "B" if holder == "A" else "A"
    not_its = await db_of[holder].write(lambda tx: deliveries.renew(tx, [kept], by=InstanceId(other), until=5000))
    assert not_its == 0
    assert await db_of[holder].write(lambda tx: deliveries.renew(tx, [kept], by=InstanceId(holder), until=5000)) == 1
    # At 2000 the unrenewed leases (to 1010) have run out: the other one takes them over, not the renewed one.
    everything = [*ids, "fresh"]
    taken = await claim(db_of[other], other, 2000, everything)
    assert set(taken) == set(everything) - {kept}
    assert await db_of[holder].write(lambda tx: deliveries.release(tx, [kept], by=InstanceId(holder))) == 1
    assert set(await claim(db_of[other], other, 2000, [kept])) == {kept}  # released: free at once

    def record(tx: Tx) -> None:
        deliveries.record_attempt(
            tx,
            kept,
            attempts=1,
            now=2100,
            status=DeliveryStatus.PENDING,
            status_code=500,
            error="HTTP 500",
            duration_ms=1,
            next_attempt_at=2100,
        )

    await db_of[other].write(record)
    assert await claim(db_of[holder], holder, 2200, [kept]) == {kept: 1}  # the outcome cleared the claim
    # The other one stops: it gives back all it holds (everything but `kept`).
    assert await first.write(lambda tx: deliveries.release(tx, None, by=InstanceId(other))) == len(everything) - 1


async def _outbox(db: Database) -> None:
    """Merchant m1 with endpoint whe1 (secret "whsec_1"), and event e1 delivered to whe1 (dlv1, dlv2 for
    a second URL of the same endpoint's merchant) and to an order's notify_url (dlv3)."""
    await _merchant(db)

    def op(tx: Tx) -> None:
        endpoints.insert_endpoint(
            tx,
            id="whe1",
            merchant_id="m1",
            url="http://127.0.0.1/a",
            event_types=["order.paid"],
            secret="whsec_1",
            now=5,
        )
        targets: list[tuple[str, str | None, str]] = [
            ("dlv1", "whe1", "http://127.0.0.1/a"),
            ("dlv2", "whe1", "http://127.0.0.1/a"),
            ("dlv3", None, "http://127.0.0.1/notify"),
        ]
        events.insert_event(tx, event_id="e1", merchant_id="m1", type="order.paid", body="{}", now=10, targets=targets)

    await db.write(op)


def _record(delivery_id: str, status: DeliveryStatus, *, now: int = 20) -> Callable[[Tx], bool]:
    def op(tx: Tx) -> bool:
        return deliveries.record_attempt(
            tx,
            delivery_id,
            now=now,
            status=status,
            attempts=1,
            status_code=200 if status is DeliveryStatus.SUCCEEDED else 500,
            error=None if status is DeliveryStatus.SUCCEEDED else "HTTP 500",
            duration_ms=3,
            next_attempt_at=now + 1000 if status is DeliveryStatus.PENDING else None,
        )

    return op


async def test_the_outbox_stores_hand_back_typed_records(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """Deliveries, attempts, endpoints and claimed outgoing deliveries come back as frozen records with
    StrEnum statuses, typed ids and opened secrets (an endpoint record carries none)."""
    db = await opened(url)
    await _outbox(db)
    assert await db.write(_record("dlv1", DeliveryStatus.SUCCEEDED))

    d = await db.read(lambda tx: deliveries.get_delivery(tx, "m1", "dlv1"))
    assert isinstance(d, Delivery) and d.status is DeliveryStatus.SUCCEEDED
    assert (d.id, d.event_id, d.event_type, d.endpoint_id, d.attempts) == ("dlv1", "e1", "order.paid", "whe1", 1)
    assert (d.succeeded_at, d.last_status_code, d.claimed_by, d.lease_until) == (20, 200, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.status = DeliveryStatus.PENDING  # type: ignore[misc]
    assert await db.read(lambda tx: deliveries.get_delivery(tx, "someone_else", "dlv1")) is None

    listed = await db.read(
        lambda tx: deliveries.list_deliveries(
            tx, "m1", status=DeliveryStatus.PENDING, event_id=None, before=None, limit=10
        )
    )
    assert sorted(x.id for x in listed) == ["dlv2", "dlv3"] and all(isinstance(x, Delivery) for x in listed)
    [attempt] = await db.read(lambda tx: deliveries.list_attempts(tx, "dlv1"))
    assert attempt == DeliveryAttempt(DeliveryId("dlv1"), 1, 20, 200, None, 3)

    endpoint = await db.read(lambda tx: endpoints.get_endpoint(tx, "m1", "whe1"))
    assert endpoint == Endpoint(
        EndpointId("whe1"), MerchantId("m1"), "http://127.0.0.1/a", ("order.paid",), 5, None, None, None
    )
    [listed_endpoint] = await db.read(lambda tx: endpoints.list_endpoints(tx, "m1"))
    assert listed_endpoint == endpoint
    keys = await db.read(lambda tx: endpoints.endpoint_keys(tx, "whe1"))
    assert keys is not None and keys.secret == "whsec_1" and "whsec_1" not in repr(keys)

    ids = await db.read(lambda tx: deliveries.due(tx, now=10, limit=10, per_target=10))
    assert ids == ["dlv2", "dlv3"]
    claimed = await db.write(lambda tx: deliveries.claim_outgoing(tx, ids, by=InstanceId("A"), now=10, until=1000))
    by_id = {o.id: o for o in claimed}
    assert all(isinstance(o, Outgoing) for o in claimed) and set(by_id) == {"dlv2", "dlv3"}
    assert by_id[DeliveryId("dlv2")].secrets(10) == ["whsec_1"]  # the endpoint's secret, opened
    assert by_id[DeliveryId("dlv3")].secrets(10) == ["s"]  # the merchant's, for a notify_url
    assert by_id[DeliveryId("dlv3")].lease_until == 1000 and by_id[DeliveryId("dlv3")].compat is None
    assert "whsec_1" not in repr(by_id[DeliveryId("dlv2")])


async def test_guarded_moves_refuse_illegal_transitions(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """A status move changes a row only from a status `states.sources` allows: a finished delivery is not
    recorded again, a pending one is not reset, disabling an endpoint leaves its finished deliveries alone."""
    db = await opened(url)
    await _outbox(db)
    assert await db.write(_record("dlv1", DeliveryStatus.SUCCEEDED))
    assert not await db.write(_record("dlv1", DeliveryStatus.FAILED, now=30))  # succeeded -> failed: refused
    assert not await db.write(_record("dlv1", DeliveryStatus.PENDING, now=30))  # a finished one is not retried
    d = await db.read(lambda tx: deliveries.get_delivery(tx, "m1", "dlv1"))
    assert d is not None and (d.status, d.updated_at) == (DeliveryStatus.SUCCEEDED, 20)

    assert not await db.write(lambda tx: deliveries.reset_for_retry(tx, "dlv2", now=40))  # pending -> pending
    assert await db.write(lambda tx: deliveries.reset_for_retry(tx, "dlv1", now=40))  # succeeded -> pending
    assert not await db.write(lambda tx: deliveries.reset_for_retry(tx, "dlv1", now=41))  # already pending

    assert await db.write(_record("dlv1", DeliveryStatus.SUCCEEDED, now=50))
    disabled = await db.write(lambda tx: deliveries.disable_pending(tx, endpoint_id="whe1", now=60, reason="gone"))
    assert disabled == 1  # dlv2 only: dlv1 had succeeded
    got = await db.read(
        lambda tx: {
            d.id: d.status
            for d in deliveries.list_deliveries(tx, "m1", status=None, event_id=None, before=None, limit=10)
        }
    )
    assert got == {"dlv1": DeliveryStatus.SUCCEEDED, "dlv2": DeliveryStatus.DISABLED, "dlv3": DeliveryStatus.PENDING}
    assert not await db.write(_record("dlv2", DeliveryStatus.SUCCEEDED, now=70))  # disabled while it was sent
    [attempt] = await db.read(lambda tx: deliveries.list_attempts(tx, "dlv2"))  # the attempt is still logged
    assert attempt.status_code == 200


async def test_a_claim_takes_due_deliveries_once_per_lease_and_caps_each_target(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """`due` lists at most `per_target` per endpoint, oldest first, and none under a live lease; a claim
    holds them until the lease runs out or the outcome is recorded (a retry is due again at its time)."""
    db = await opened(url)
    await _outbox(db)
    assert await db.read(lambda tx: deliveries.due(tx, now=9, limit=10, per_target=10)) == []  # not yet due
    assert await db.read(lambda tx: deliveries.due(tx, now=10, limit=10, per_target=1)) == ["dlv1", "dlv3"]
    first = await db.write(
        lambda tx: deliveries.claim_outgoing(tx, ["dlv1", "dlv3"], by=InstanceId("A"), now=10, until=500)
    )
    assert [o.id for o in first] == ["dlv1", "dlv3"]
    assert (
        await db.write(lambda tx: deliveries.claim_outgoing(tx, ["dlv1"], by=InstanceId("B"), now=100, until=900)) == []
    )
    assert await db.read(lambda tx: deliveries.due(tx, now=100, limit=10, per_target=10)) == ["dlv2"]
    assert await db.read(lambda tx: deliveries.due(tx, now=500, limit=10, per_target=10)) == ["dlv1", "dlv2", "dlv3"]
    assert await db.write(_record("dlv1", DeliveryStatus.PENDING, now=100))  # a retry at 1100, claim cleared
    d = await db.read(lambda tx: deliveries.get_delivery(tx, "m1", "dlv1"))
    assert d is not None and (d.claimed_by, d.lease_until, d.next_attempt_at) == (None, None, 1100)
    assert await db.read(lambda tx: deliveries.next_due_after(tx, 100)) == 1100
    assert await db.read(lambda tx: deliveries.due(tx, now=1100, limit=10, per_target=10)) == ["dlv2", "dlv3", "dlv1"]


async def test_a_taken_slot_is_refused_by_the_database(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """Inserting a held (slot, amount) directly is an IntegrityError of ours, whatever the driver;
    lock_amount says False instead; the failed job leaves nothing behind."""
    db = await opened(url)
    await _merchant(db)

    def order(tx: Tx, order_id: str) -> None:
        tx.execute(
            "INSERT INTO orders (id, merchant_id, merchant_order_id, channel, amount_cents, pay_amount_cents,"
            " status, params_hash, created_at, expires_at) VALUES (?, 'm1', ?, 'alipay', 1000, 1000, 'pending', 'p',"
            " 0, 1)",
            (order_id, order_id),
        )

    def take(order_id: str) -> Callable[[Tx], bool]:
        def op(tx: Tx) -> bool:
            order(tx, order_id)
            return orders.lock_amount(tx, "slot", 1000, order_id)

        return op

    def force(tx: Tx) -> None:
        order(tx, "o3")
        tx.execute("INSERT INTO amount_locks (slot, pay_amount_cents, order_id) VALUES ('slot', 1000, 'o3')")

    assert await db.write(take("o1")) is True
    assert await db.write(take("o2")) is False
    with pytest.raises(IntegrityError):
        await db.write(force)
    assert await db.read(_count("SELECT COUNT(*) FROM orders WHERE id = 'o3'")) == 0


async def test_a_device_reports_an_event_id_once(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """(device, event id) is unique: of two processes logging the same report at once exactly one succeeds."""
    first, second = await opened(url), await opened(url)
    await _merchant(first)

    def log(tx: Tx) -> bool:
        return payments.insert_report(
            tx, device_id="d1", event_id="e1", seq=1, now=0, outcome="matched", payment_id=None
        )

    results = await asyncio.gather(first.write(log), second.write(log), first.write(log), second.write(log))
    assert sorted(results) == [False, False, False, True]

    def direct(tx: Tx) -> None:
        tx.execute(
            "INSERT INTO reports (device_id, event_id, seq, received_at, outcome) VALUES ('d1', 'e1', 2, 0, 'x')"
        )

    with pytest.raises(IntegrityError):
        await first.write(direct)


async def test_a_notification_fingerprint_is_claimed_once(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """A fingerprint within the dedupe window is claimed by one payment only, even from two processes at
    once; after the window it may be claimed again."""
    first, second = await opened(url), await opened(url)
    await _merchant(first)

    def claim(payment_id: str, now: int) -> Callable[[Tx], bool]:
        def op(tx: Tx) -> bool:
            return payments.claim_fingerprint(
                tx, merchant_id="m1", fingerprint="fp", now=now, payment_id=payment_id, since=now - 100
            )

        return op

    results = await asyncio.gather(*(db.write(claim(f"p{i}", 1000)) for i, db in enumerate([first, second] * 3)))
    assert results.count(True) == 1
    assert await first.write(claim("late", 5000)) is True  # the earlier claim is outside the window
    row = await second.read(lambda tx: payments.find_fingerprint(tx, "m1", "fp", since=0))
    assert row is not None and row.payment_id == "late"


async def test_one_batch_one_transaction_and_a_failing_job_rolls_back_alone(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """Writes queued together commit in one transaction; a job that raises (our error, or the database
    refusing a duplicate) is undone alone, and the jobs after it in the batch still commit."""
    db = await opened(url)
    await _merchant(db)

    def insert(event_id: str, fail: Exception | None = None) -> Callable[[Tx], str]:
        def op(tx: Tx) -> str:
            tx.execute(
                "INSERT INTO events (id, merchant_id, type, created_at, body) VALUES (?, 'm1', 't', 0, '{}')",
                (event_id,),
            )
            if fail is not None:
                raise fail
            return event_id

        return op

    await db.write(insert("dup"))
    commits = db.commits
    results = await asyncio.gather(
        db.write(insert("a")),
        db.write(insert("b", ValueError("boom"))),
        db.write(insert("dup")),  # the unique id refuses it; on PostgreSQL this aborts until the savepoint
        db.write(insert("c")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[3] == "c"
    assert isinstance(results[1], ValueError) and isinstance(results[2], IntegrityError)
    assert db.commits == commits + 1
    ids = await db.read(lambda tx: sorted(str(r["id"]) for r in tx.all("SELECT id FROM events")))
    assert ids == ["a", "c", "dup"]


async def test_migrations_are_idempotent_and_a_newer_schema_is_refused(
    url: str, opened: Callable[[str], Awaitable[Database]], key_file: Path
) -> None:
    """Opening again applies nothing twice; a schema newer than this bridge refuses to start."""
    db = await opened(url)
    await db.close()
    db = await opened(url)
    versions = await db.read(lambda tx: [int(r[0]) for r in tx.all("SELECT version FROM schema_version")])
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))
    await db.write(lambda tx: tx.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,)))
    await db.close()
    newer = open_database(url, key_file=key_file)
    with pytest.raises(StoreError, match="newer than this bridge"):
        await newer.open()


MIGRATE = """
import asyncio, sys, time
from pathlib import Path
from bridge.store.database import open_database
import bridge.store.postgres, bridge.store.sqlite

async def main() -> None:
    db = open_database(sys.argv[1], key_file=Path(sys.argv[3]))
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process starts at the same instant
    await db.open()
    await db.close()

asyncio.run(main())
"""


async def test_processes_starting_together_migrate_once(
    url: str, opened: Callable[[str], Awaitable[Database]], key_file: Path
) -> None:
    """Four processes open one empty database at the same moment: all start, each migration is applied once."""
    start = str(time.time() + 3)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", MIGRATE, url, start, str(key_file), cwd=ROOT, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = await asyncio.wait_for(p.communicate(), 60)
        assert p.returncode == 0, err.decode()
    db = await opened(url)
    versions = await db.read(lambda tx: [int(r[0]) for r in tx.all("SELECT version FROM schema_version")])
    assert sorted(versions) == list(range(1, len(MIGRATIONS) + 1))


async def test_connections_the_server_closed_are_reopened(key_file: Path) -> None:
    """PostgreSQL: after the server ends every session of a bridge (pg_terminate_backend, as in a restart
    or a failover), the next write and reads work, on new connections."""
    import psycopg

    name = f"pbkill{uuid.uuid4().hex[:8]}"
    url = f"{pg.fresh_database()}&application_name={name}"
    db = open_database(url, key_file=key_file)
    await db.open()
    try:
        await _merchant(db)
        pid = await db.write(_count("SELECT pg_backend_pid()"))
        for _ in range(4):
            await db.read(_count("SELECT 1"))
        with psycopg.connect(pg.server_url(), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s) k",
                (name,),
            ).fetchone()
        assert killed is not None and killed[0] >= 2
        assert await db.write(lambda tx: merchants.get_merchant(tx, "m1") is not None) is True
        for _ in range(8):  # every reader meets its closed connection
            assert await db.read(_count("SELECT COUNT(*) FROM merchants")) == 1
        assert await db.write(_count("SELECT pg_backend_pid()")) != pid
    finally:
        await db.close()


async def test_a_connection_lost_mid_batch_fails_the_batch_and_the_next_one_works(
    opened: Callable[[str], Awaitable[Database]],
) -> None:
    """PostgreSQL: when the writer's session dies inside a batch, every job of the batch gets DatabaseUnavailable,
    nothing of it is committed, and the next write commits on a new connection."""
    db = await opened(pg.fresh_database())
    await _merchant(db)

    def event(event_id: str) -> Callable[[Tx], str]:
        def op(tx: Tx) -> str:
            tx.execute(
                "INSERT INTO events (id, merchant_id, type, created_at, body) VALUES (?, 'm1', 't', 0, '{}')",
                (event_id,),
            )
            return event_id

        return op

    def suicide(tx: Tx) -> None:
        tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    results = await asyncio.gather(db.write(event("e1")), db.write(suicide), return_exceptions=True)
    assert all(isinstance(r, DatabaseUnavailable) for r in results), results
    assert await db.write(event("e2")) == "e2"
    ids = await db.read(lambda tx: [str(r[0]) for r in tx.all("SELECT id FROM events")])
    assert ids == ["e2"]


async def test_a_savepoint_block_is_undone_alone(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """tx.savepoint(): a block that fails (here a unique violation, which on PostgreSQL aborts the
    transaction until rolled back) is undone with its after-commit callbacks; the job goes on and commits
    the rest."""
    db = await opened(url)
    await _merchant(db)
    called: list[str] = []

    def event(tx: Tx, event_id: str) -> None:
        tx.execute(
            "INSERT INTO events (id, merchant_id, type, created_at, body) VALUES (?, 'm1', 't', 0, '{}')", (event_id,)
        )
        tx.after_commit.append(lambda: called.append(event_id))

    def op(tx: Tx) -> str:
        event(tx, "e1")
        with pytest.raises(IntegrityError), tx.savepoint():
            event(tx, "e2")
            event(tx, "e1")
        with tx.savepoint():
            event(tx, "e3")
        return "done"

    assert await db.write(op) == "done"
    ids = await db.read(lambda tx: sorted(str(r[0]) for r in tx.all("SELECT id FROM events")))
    assert ids == ["e1", "e3"] and called == ["e1", "e3"]


SEALED = {"sqlite": "pbs1:", "postgresql": "pgs1:"}  # bridge.store.sealing, bridge.store.postgres


async def test_secrets_are_sealed_in_the_database_and_opened_by_sql(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """seal_secret / open_secret on every backend: the stored value is not the secret and differs each
    time it is sealed, opens back to it, NULL passes through, a sealed value is not sealed again, and a
    value that is plaintext or sealed as another kind of secret does not open (DatabaseUnavailable, not garbage)."""
    db = await opened(url)
    secret = "whsec_" + "c2VjcmV0IHNpZ25pbmcga2V5IQ"

    def op(tx: Tx) -> tuple[str, str, str, tuple[object, ...]]:
        merchants.insert_merchant(tx, id="m1", name="shop", api_key_hash="h1", webhook_secret=secret, now=0)
        raw = tx.one("SELECT webhook_secret FROM merchants WHERE id = 'm1'")
        again = tx.one("SELECT seal_secret('merchants.webhook_secret', ?)", (secret,))
        kept = tx.one("SELECT seal_secret('merchants.webhook_secret', ?)", (raw[0] if raw else None,))
        null = tx.one("SELECT seal_secret('merchants.webhook_secret', NULL), open_secret('x', NULL)")
        assert raw is not None and again is not None and kept is not None and null is not None
        return str(raw[0]), str(again[0]), str(kept[0]), tuple(null)

    raw, again, kept, null = await db.write(op)
    assert raw.startswith(SEALED[db.dialect]) and secret not in raw and secret.removeprefix("whsec_") not in raw
    assert again != raw and kept == raw and null == (None, None)
    plain = await db.read(
        lambda tx: tx.one("SELECT open_secret('merchants.webhook_secret', webhook_secret) FROM merchants")
    )
    assert plain is not None and plain[0] == secret
    for sql in (
        "SELECT open_secret('webhook_endpoints.secret', webhook_secret) FROM merchants",
        "SELECT open_secret('merchants.webhook_secret', name) FROM merchants",
    ):
        with pytest.raises(DatabaseUnavailable):
            await db.read(lambda tx, sql=sql: tx.one(sql))  # type: ignore[misc]


async def test_a_wrong_secrets_key_is_refused_at_open(url: str, tmp_path: Path) -> None:
    """A database whose secrets were sealed with one key does not open with another (the error names the
    key file); with the right key it opens again."""
    right, wrong = tmp_path / "right.key", tmp_path / "wrong.key"
    db = open_database(url, key_file=right)
    await db.open()
    await _merchant(db)
    await db.close()
    other = open_database(url, key_file=wrong)
    with pytest.raises(StoreError, match=r"wrong\.key"):
        await other.open()
    again = open_database(url, key_file=right)
    await again.open()
    try:
        assert await again.read(_count("SELECT COUNT(*) FROM merchants")) == 1
    finally:
        await again.close()


def test_migrations_spell_postgresql_types() -> None:
    """On PostgreSQL every INTEGER column is BIGINT (Unix ms overflow 32 bits) and AUTOINCREMENT is an identity."""
    for _, statements in MIGRATIONS:
        for sql in statements_for(statements, "postgresql"):
            assert "INTEGER" not in sql and "AUTOINCREMENT" not in sql, sql
        assert statements_for(statements, "sqlite") == statements


def test_placeholders_are_translated_outside_quotes_only() -> None:
    """`?` becomes `%s` outside string literals; every `%` is doubled so psycopg leaves it alone."""
    from bridge.store.postgres import translate

    assert translate("SELECT * FROM t WHERE a = ? AND b IN (?, ?)") == "SELECT * FROM t WHERE a = %s AND b IN (%s, %s)"
    assert translate("SELECT '?', 'it''s ?' , \"q?\" FROM t WHERE a LIKE '5%' AND b = ?") == (
        "SELECT '?', 'it''s ?' , \"q?\" FROM t WHERE a LIKE '5%%' AND b = %s"
    )
    assert translate("SELECT 1") == "SELECT 1"


# The typed store: records with typed statuses, and status moves guarded by the transition table.


def _new_order(
    tx: Tx, order_id: str, *, pay: int = 1000, account_id: str | None = None, ref: str | None = None
) -> Order | None:
    """An order of merchant m1 (reference `ref`, by default one of its own), or None if the reference is taken."""
    return orders.insert_order(
        tx,
        id=order_id,
        merchant_id="m1",
        merchant_order_id=ref or f"ref-{order_id}",
        channel="alipay",
        amount_cents=1000,
        pay_amount_cents=pay,
        account_id=account_id,
        notify_url="https://shop.example/n",
        return_url=None,
        description="tea",
        metadata='{"sku":"t1"}',
        params_hash="p",
        now=5,
        expires_at=10**12,
    )


def _new_payment(payment_id: str, status: PaymentStatus = PaymentStatus.UNMATCHED) -> Payment:
    return Payment(
        id=PaymentId(payment_id),
        merchant_id=MerchantId("m1"),
        device_id=DeviceId("d1"),
        kind="payment",
        channel="alipay",
        amount_cents=1000,
        status=status,
        reason="no_order",
        order_id=None,
        late=False,
        manual=False,
        observed_at=7,
        received_at=8,
        event_id=f"e-{payment_id}",
        fingerprint=f"fp-{payment_id}",
        notification='{"title":"paid"}',
    )


async def test_orders_come_back_as_typed_records(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """Every order read is an Order with an OrderStatus member, ints, bools and None where the row has NULL."""
    db = await opened(url)
    await _merchant(db)

    def op(tx: Tx) -> list[Order | None]:
        merchants.insert_account(tx, id="a1", merchant_id="m1", channel="alipay", name="main", qr_payload="q", now=1)
        return [
            _new_order(tx, "o1", account_id="a1"),
            orders.get_order(tx, "m1", "o1"),
            orders.find_order(tx, "o1"),
            orders.get_order_by_merchant_ref(tx, "m1", "ref-o1"),
            *orders.list_orders(tx, "m1", merchant_order_id="ref-o1", status="pending", before=None, limit=5),
            *orders.match_candidates(tx, "m1", 1000, "d1", since=0)[:1],
            orders.get_order(tx, "m2", "o1"),  # another merchant's view: nothing
        ]

    inserted, *found, other = await db.write(op)
    assert other is None and inserted == found[0]
    first = found[0]
    assert isinstance(first, Order) and all(o == first for o in found)
    assert first.status is OrderStatus.PENDING and type(first.status) is OrderStatus
    assert (first.id, first.merchant_id, first.account_id, first.merchant_order_id) == ("o1", "m1", "a1", "ref-o1")
    assert (first.amount_cents, first.pay_amount_cents, first.created_at, first.expires_at) == (1000, 1000, 5, 10**12)
    assert (first.paid_at, first.closed_at, first.payment_id, first.return_url) == (None, None, None, None)
    assert first.late is False and first.manual is False and first.metadata == '{"sku":"t1"}'


async def test_a_second_order_with_one_merchant_order_id_is_not_inserted(
    url: str, opened: Callable[[str], Awaitable[Database]]
) -> None:
    """insert_order answers False and writes nothing when the merchant already has that reference, even
    when two "processes" insert it at once (PostgreSQL: the loser waits, then does nothing, no error)."""
    first, second = await opened(url), await opened(url)
    await _merchant(first)

    def insert(order_id: str) -> Callable[[Tx], bool]:
        def op(tx: Tx) -> bool:
            return None is not _new_order(tx, order_id, ref="same")

        return op

    results = await asyncio.gather(*(db.write(insert(f"o{i}")) for i, db in enumerate([first, second] * 4)))
    assert sorted(results) == [False] * 7 + [True]
    assert await first.read(_count("SELECT COUNT(*) FROM orders WHERE merchant_order_id = 'same'")) == 1


async def test_order_moves_follow_the_transition_table(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """Closing, expiring and paying change an order only from the statuses the table allows: a closed
    order cannot be paid or expired, a paid one cannot be closed; an expired one can still be paid (late)."""
    db = await opened(url)
    await _merchant(db)

    def op(tx: Tx) -> dict[str, object]:
        for order_id, pay in (("closed", 1000), ("expired", 999), ("paid", 998)):
            assert _new_order(tx, order_id, pay=pay)
            assert orders.lock_amount(tx, "slot", pay, order_id)
        out: dict[str, object] = {}
        out["close"] = orders.set_closed(tx, "closed", now=20)
        out["pay_closed"] = orders.set_paid(tx, "m1", "closed", payment_id="p1", now=21, late=False, manual=False)
        out["expire_closed"] = orders.set_expired(tx, "closed")
        out["close_again"] = orders.set_closed(tx, "closed", now=22)
        out["expire"] = orders.set_expired(tx, "expired")
        out["pay_expired"] = orders.set_paid(tx, "m1", "expired", payment_id="p2", now=23, late=True, manual=False)
        out["pay"] = orders.set_paid(tx, "m1", "paid", payment_id="p3", now=24, late=False, manual=True)
        out["close_paid"] = orders.set_closed(tx, "paid", now=25)
        out["pay_twice"] = orders.set_paid(tx, "m1", "paid", payment_id="p4", now=26, late=False, manual=False)
        out["wrong_merchant"] = orders.set_paid(tx, "m2", "paid", payment_id="p5", now=27, late=False, manual=False)
        out["now"] = {o: orders.get_order(tx, "m1", o) for o in ("closed", "expired", "paid")}
        out["locks"] = orders.slots_taken(tx, ["slot"], [1000, 999, 998])
        return out

    out = await db.write(op)
    closed = out["close"]
    assert isinstance(closed, Order) and closed.status is OrderStatus.CLOSED and closed.closed_at == 20
    for refused in ("pay_closed", "expire_closed", "close_again", "close_paid", "pay_twice", "wrong_merchant"):
        assert out[refused] is None, refused
    expired, late, paid = out["expire"], out["pay_expired"], out["pay"]
    assert isinstance(expired, Order) and expired.status is OrderStatus.EXPIRED
    assert isinstance(late, Order) and late.status is OrderStatus.PAID and late.late and late.payment_id == "p2"
    assert isinstance(paid, Order) and paid.status is OrderStatus.PAID and paid.manual and paid.paid_at == 24
    now = out["now"]
    assert isinstance(now, dict)
    assert {k: (v.status, v.payment_id) for k, v in now.items()} == {
        "closed": (OrderStatus.CLOSED, None),  # the refused payment left no trace
        "expired": (OrderStatus.PAID, "p2"),
        "paid": (OrderStatus.PAID, "p3"),  # the second payment did not replace the first
    }
    assert out["locks"] == set()  # each move away from pending released its pay amount


async def test_payments_round_trip_and_resolve_once(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """A payment comes back as the Payment that was stored; an unmatched one resolves once (ignored), and
    then matching it changes nothing."""
    db = await opened(url)
    await _merchant(db)
    stored = _new_payment("p1")

    def op(tx: Tx) -> tuple[Payment | None, Payment | None, Payment | None, Payment | None, list[Payment]]:
        payments.insert_payment(tx, stored)
        payments.insert_payment(tx, _new_payment("p2"))
        back = payments.get_payment(tx, "m1", "p1")
        ignored = payments.set_payment_status(tx, "p1", status=PaymentStatus.IGNORED, reason="x", manual=True)
        matched = payments.set_payment_status(tx, "p1", status=PaymentStatus.MATCHED, reason="manual", manual=True)
        after = payments.get_payment(tx, "m1", "p1")
        listed = payments.list_payments(tx, "m1", status="unmatched", before=None, limit=10)
        return back, ignored, matched, after, listed

    back, ignored, matched, after, listed = await db.write(op)
    assert back == stored and type(back.status) is PaymentStatus  # type: ignore[union-attr]
    assert ignored is not None and ignored.status is PaymentStatus.IGNORED and ignored.manual is True
    assert matched is None and after == ignored
    assert [p.id for p in listed] == ["p2"] and listed[0].status is PaymentStatus.UNMATCHED


async def test_merchants_accounts_and_shops_are_records(url: str, opened: Callable[[str], Awaitable[Database]]) -> None:
    """Merchants, accounts, usage counts, compat credentials (opened) and compat orders come back as records."""
    db = await opened(url)
    await _merchant(db)

    def op(tx: Tx) -> tuple[object, ...]:
        merchants.insert_account(tx, id="a1", merchant_id="m1", channel="wechat", name="till", qr_payload=None, now=3)
        assert _new_order(tx, "o1")
        orders.set_paid(tx, "m1", "o1", payment_id="p1", now=9, late=False, manual=False)
        payments.insert_payment(tx, _new_payment("p9"))
        pid = compat.insert_merchant(
            tx, merchant_id="m1", key="k" * 32, platform_private_key="priv", platform_public_key="pub", now=4
        )
        compat.insert_compat_order(
            tx,
            order_id="o1",
            merchant_id="m1",
            protocol="epay1",
            out_trade_no="T1",
            money_str="10",
            pay_type=None,
            name="tea",
            param="",
            notify_url=None,
            return_url=None,
            params_hash="h",
            now=6,
        )
        return (
            merchants.get_merchant(tx, "m1"),
            merchants.merchant_by_key_hash(tx, "h1"),
            merchants.accounts_for_merchant(tx, "m1"),
            merchants.list_merchants(tx),
            pid,
            compat.get_merchant_by_pid(tx, pid),
            compat.get_compat_order_by_ref(tx, "m1", "T1"),
        )

    merchant, by_key, accounts, usage, pid, shop, compat_order = await db.write(op)
    assert merchant == by_key == Merchant(MerchantId("m1"), "shop", "h1", 0)
    assert accounts == [Account(AccountId("a1"), MerchantId("m1"), "wechat", "till", None, 3)]
    assert usage == [MerchantUsage(MerchantId("m1"), "shop", 0, 1, 1, 1, 1000, 1, 5)]
    assert shop == Shop(MerchantId("m1"), pid, "k" * 32, "priv", "pub", None)  # type: ignore[arg-type]
    assert isinstance(compat_order, CompatOrder) and (compat_order.order_id, compat_order.type) == ("o1", None)
