"""The delivery worker against a real SQLite file and a plain fake transport: pipelining, per-host and
global limits, no concurrent double sends, grouped recording, shutdown, metrics, and the outcome table."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from standardwebhooks.webhooks import Webhook

from bridge.clock import SystemClock
from bridge.core.backoff import RetryPolicy
from bridge.core.states import DeliveryStatus
from bridge.errors import SendFailure
from bridge.services.admin import create_merchant
from bridge.services.context import Context
from bridge.services.delivery import DeliveryWorker, Outcome, classify
from bridge.services.endpoints import create_endpoint, get_delivery, get_endpoint, list_deliveries, send_test_event
from bridge.services.events import emit
from bridge.store.database import Tx, open_database
from bridge.transport import TransportResult
from bridge.web.webhooks import delivery_json
from tests.harness import eventually, make_settings

Respond = Callable[[str, dict[str, str], bytes], Awaitable[TransportResult]]


def ok(status: int = 200, retry_after: float | None = None) -> TransportResult:
    return TransportResult.answered(status, 1.0, retry_after=retry_after)


def failed(failure: SendFailure, detail: str = "") -> TransportResult:
    return TransportResult.failed(failure, 1.0, detail)


class FakeTransport:
    """Answers with `respond`, remembering every request and the peak number in flight per host."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond = respond
        self.calls: list[tuple[str, dict[str, str], bytes]] = []
        self.active: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_total = 0

    async def send(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> TransportResult:
        host = urlsplit(url).netloc
        self.calls.append((url, headers, body))
        self.active[host] += 1
        self.peak[host] = max(self.peak[host], self.active[host])
        self.peak_total = max(self.peak_total, sum(self.active.values()))
        try:
            return await self.respond(url, headers, body) if self.respond else ok()
        finally:
            self.active[host] -= 1

    async def close(self) -> None:
        pass

    def ids_sent_to(self, host: str) -> list[str]:
        return [h["webhook-id"] for u, h, _ in self.calls if urlsplit(u).netloc == host]


@asynccontextmanager
async def context(tmp_path: Path, **overrides: Any) -> AsyncIterator[Context]:
    settings = make_settings(tmp_path / "d", **overrides)
    db = open_database(settings.database, key_file=settings.secrets_key_path)
    ctx = Context(settings=settings, db=db, clock=SystemClock())
    await ctx.db.open()
    try:
        yield ctx
    finally:
        await ctx.db.close()


@asynccontextmanager
async def running(worker: DeliveryWorker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run(), name="test-worker")
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def events_to(ctx: Context, merchant_id: str, urls: list[str]) -> list[str]:
    """One order.closed event per URL, each delivered to that URL as an order's notify_url."""

    def op(tx: Tx) -> list[str]:
        now = ctx.clock.now_ms()
        return [
            emit(tx, ctx.bus, merchant_id=merchant_id, type="order.closed", data={"n": i}, now=now, notify_url=u)
            for i, u in enumerate(urls)
        ]

    return await ctx.db.write(op)


async def deliveries(ctx: Context, merchant_id: str, status: str | None = None) -> list[dict[str, Any]]:
    page = await list_deliveries(ctx, merchant_id, status=status, event_id=None, before=None, limit=500)
    return [delivery_json(d) for d in page.data]


async def all_have(ctx: Context, merchant_id: str, status: str, n: int) -> list[dict[str, Any]]:
    return list(await eventually(lambda: deliveries(ctx, merchant_id, status), lambda d: len(d) == n, timeout=10))


def attempts_metric(ctx: Context, outcome: str) -> float:
    value = ctx.metrics.registry.get_sample_value("paybridge_webhook_attempts_total", {"outcome": outcome})
    return value or 0.0


POLICY = RetryPolicy(schedule=(0, 5, 300), jitter=0.0)


@pytest.mark.parametrize(
    ("result", "attempt", "expected"),
    [
        (ok(200), 1, Outcome(DeliveryStatus.SUCCEEDED, "success", None)),
        (ok(204), 3, Outcome(DeliveryStatus.SUCCEEDED, "success", None)),
        (ok(410), 1, Outcome(DeliveryStatus.DISABLED, "gone", None, disable_endpoint=True)),
        (failed(SendFailure.FORBIDDEN_TARGET, "10.0.0.1"), 1, Outcome(DeliveryStatus.FAILED, "forbidden_target", None)),
        (ok(500), 1, Outcome(DeliveryStatus.PENDING, "http_error", 5.0)),
        (ok(302), 2, Outcome(DeliveryStatus.PENDING, "http_error", 300.0)),
        (ok(503, retry_after=60), 1, Outcome(DeliveryStatus.PENDING, "http_error", 60.0)),
        (failed(SendFailure.TIMEOUT), 1, Outcome(DeliveryStatus.PENDING, "timeout", 5.0)),
        (failed(SendFailure.NETWORK, "refused"), 1, Outcome(DeliveryStatus.PENDING, "network_error", 5.0)),
        (failed(SendFailure.INTERNAL, "KeyError"), 1, Outcome(DeliveryStatus.PENDING, "network_error", 5.0)),
        (ok(500), 3, Outcome(DeliveryStatus.FAILED, "http_error", None)),
        (failed(SendFailure.TIMEOUT), 3, Outcome(DeliveryStatus.FAILED, "timeout", None)),
    ],
)
def test_classify(result: TransportResult, attempt: int, expected: Outcome) -> None:
    """Only 2xx succeeds; 410 disables; forbidden targets fail at once; the rest retry until the schedule ends."""
    assert classify(result, attempt=attempt, policy=POLICY, rng=random.Random(0)) == expected


async def test_every_due_delivery_is_sent_once_signed_and_recorded(tmp_path: Path) -> None:
    """Deliveries to several hosts are each sent exactly once, verify with the merchant secret, and succeed."""
    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        transport = FakeTransport()
        urls = [f"http://h{i % 3}.example/hook" for i in range(30)]
        event_ids = await events_to(ctx, m["id"], urls)
        async with running(DeliveryWorker(ctx, transport)):
            await all_have(ctx, m["id"], "succeeded", 30)
        assert sorted(h["webhook-id"] for _, h, _ in transport.calls) == sorted(event_ids)
        for _, headers, body in transport.calls:
            Webhook(m["webhook_secret"]).verify(body, headers)
        assert attempts_metric(ctx, "success") == 30


async def test_a_fresh_delivery_goes_out_from_memory_already_claimed(tmp_path: Path) -> None:
    """A delivery committed while the worker runs is sent without being claimed or read back: the only
    write after its commit is the recorded outcome, which also clears the claim it was committed with."""
    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        transport = FakeTransport()
        worker = DeliveryWorker(ctx, transport)
        async with running(worker):
            await eventually(lambda: asyncio.sleep(0, ctx.bus.claimant), lambda c: c is not None)
            [event_id] = await events_to(ctx, m["id"], ["http://h.example/"])
            before = ctx.db.writes
            [d] = await all_have(ctx, m["id"], "succeeded", 1)
            assert ctx.db.writes - before == 1
        assert [h["webhook-id"] for _, h, _ in transport.calls] == [event_id]
        full = await get_delivery(ctx, m["id"], d["id"])
        assert (full.delivery.claimed_by, full.delivery.lease_until) == (None, None)


async def test_a_test_event_is_signed_with_the_endpoints_secret(tmp_path: Path) -> None:
    """A dashboard test event, handed over in memory at commit, verifies with the endpoint's secret
    (the one shown at creation), not with its sealed form."""
    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        created = await create_endpoint(ctx, m["id"], "http://hook.example/", [])
        transport = FakeTransport()
        async with running(DeliveryWorker(ctx, transport)):
            await eventually(lambda: asyncio.sleep(0, ctx.bus.claimant), lambda c: c is not None)
            sent = await send_test_event(ctx, m["id"], created.endpoint.id)
            [d] = await all_have(ctx, m["id"], "succeeded", 1)
        assert d["attempts"] == 1  # the first attempt went out signed
        [(_, headers, body)] = transport.calls
        assert headers["webhook-id"] == sent.event_id
        Webhook(created.secret).verify(body, headers)


async def test_a_delivery_is_never_sent_twice_concurrently(tmp_path: Path) -> None:
    """While sends hang, repeated wake-ups reload the outbox but never start a second send of the same delivery."""
    gate = asyncio.Event()

    async def held(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
        await gate.wait()
        return ok()

    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        transport = FakeTransport(held)
        await events_to(ctx, m["id"], [f"http://h{i}.example/" for i in range(5)])
        async with running(DeliveryWorker(ctx, transport)):
            await eventually(lambda: asyncio.sleep(0, len(transport.calls)), lambda n: n == 5)
            for _ in range(20):  # every wake-up makes the loop query the due deliveries again
                ctx.bus.deliveries.set()
                await asyncio.sleep(0.01)
            assert len(transport.calls) == 5
            gate.set()
            await all_have(ctx, m["id"], "succeeded", 5)
        assert len(transport.calls) == 5


async def test_a_hanging_host_holds_only_its_own_slots(tmp_path: Path) -> None:
    """A host that never answers gets at most webhook_per_host requests in flight; another host's deliveries all go."""
    never = asyncio.Event()

    async def respond(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
        if "dead" in url:
            await never.wait()
        return ok()

    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        transport = FakeTransport(respond)
        # the dead host's deliveries are older, so they come first in the outbox
        await events_to(ctx, m["id"], [f"http://dead.example/{i}" for i in range(40)])
        await events_to(ctx, m["id"], [f"http://fast.example/{i}" for i in range(20)])
        async with running(DeliveryWorker(ctx, transport)):
            await all_have(ctx, m["id"], "succeeded", 20)
            assert transport.peak["dead.example"] == ctx.settings.webhook_per_host
            assert len(transport.ids_sent_to("dead.example")) == ctx.settings.webhook_per_host
            never.set()
            await all_have(ctx, m["id"], "succeeded", 60)


async def test_global_concurrency_limit(tmp_path: Path) -> None:
    """No more than settings.webhook_concurrency requests are in flight across all hosts."""

    async def slow(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
        await asyncio.sleep(0.02)
        return ok()

    async with context(tmp_path, webhook_concurrency=3) as ctx:
        m = await create_merchant(ctx, "shop")
        transport = FakeTransport(slow)
        await events_to(ctx, m["id"], [f"http://h{i}.example/" for i in range(12)])
        async with running(DeliveryWorker(ctx, transport)):
            await all_have(ctx, m["id"], "succeeded", 12)
        assert transport.peak_total == 3


async def test_outcomes_are_recorded_in_grouped_writes(tmp_path: Path) -> None:
    """Many attempts finishing together are recorded in fewer write jobs than there are attempts."""
    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        await events_to(ctx, m["id"], [f"http://h{i}.example/" for i in range(60)])
        before = ctx.db.writes
        async with running(DeliveryWorker(ctx, FakeTransport())):
            await all_have(ctx, m["id"], "succeeded", 60)
        assert ctx.db.writes - before < 60


async def test_an_attempt_that_finished_is_recorded_through_shutdown(tmp_path: Path) -> None:
    """If the worker is cancelled just as a receiver answers 2xx, the success is still recorded."""
    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        await events_to(ctx, m["id"], ["http://h.example/"])
        worker_task: list[asyncio.Task[None]] = []

        async def answer_then_stop(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
            worker_task[0].cancel()
            return ok(200)

        worker_task.append(asyncio.create_task(DeliveryWorker(ctx, FakeTransport(answer_then_stop)).run()))
        with pytest.raises(asyncio.CancelledError):
            await worker_task[0]
        [d] = await deliveries(ctx, m["id"])
        assert (d["status"], d["attempts"], d["last_status_code"]) == ("succeeded", 1, 200)


async def test_an_unanswered_send_is_resent_with_the_same_id_after_a_restart(tmp_path: Path) -> None:
    """A send cut off by shutdown leaves the delivery pending; the next worker sends it again, same webhook-id."""
    hang = asyncio.Event()

    async def stuck(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
        await hang.wait()
        return ok()

    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        [event_id] = await events_to(ctx, m["id"], ["http://h.example/"])
        first = FakeTransport(stuck)
        async with running(DeliveryWorker(ctx, first)):
            await eventually(lambda: asyncio.sleep(0, len(first.calls)), lambda n: n == 1)
        [d] = await deliveries(ctx, m["id"])
        assert (d["status"], d["attempts"]) == ("pending", 0)
        second = FakeTransport()
        async with running(DeliveryWorker(ctx, second)):
            await all_have(ctx, m["id"], "succeeded", 1)
        assert first.calls[0][1]["webhook-id"] == second.calls[0][1]["webhook-id"] == event_id
        assert first.calls[0][2] == second.calls[0][2]


async def test_metrics_count_each_outcome(tmp_path: Path) -> None:
    """Each attempt is counted under success, http_error, timeout, network_error, gone or forbidden_target."""
    answers = {
        "a": ok(200),
        "b": ok(500),
        "c": failed(SendFailure.TIMEOUT),
        "d": failed(SendFailure.NETWORK, "refused"),
        "e": failed(SendFailure.FORBIDDEN_TARGET, "10.0.0.1"),
    }

    async def respond(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
        return answers[urlsplit(url).hostname or ""]

    async with context(tmp_path, webhook_schedule="0") as ctx:  # one attempt each: everything ends at once
        m = await create_merchant(ctx, "shop")
        await events_to(ctx, m["id"], [f"http://{h}/" for h in answers])
        async with running(DeliveryWorker(ctx, FakeTransport(respond))):
            await all_have(ctx, m["id"], "failed", 4)
        for outcome in ("success", "http_error", "timeout", "network_error", "forbidden_target"):
            assert attempts_metric(ctx, outcome) == 1, outcome


async def test_gone_disables_the_endpoint_and_its_pending_deliveries(tmp_path: Path) -> None:
    """A 410 disables the endpoint ('gone') and its other pending deliveries; the notify_url delivery still goes."""
    answered = asyncio.Event()

    async def respond(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
        if "gone" in url:
            if answered.is_set():
                raise AssertionError("a disabled endpoint was called again")
            answered.set()
            return ok(410)
        return ok(200)

    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        ep = await create_endpoint(ctx, m["id"], "http://gone.example/hook", [])
        await events_to(ctx, m["id"], ["http://other.example/a"] * 3)  # each also goes to the endpoint
        transport = FakeTransport(respond)
        async with running(DeliveryWorker(ctx, transport, per_target=1)):
            await all_have(ctx, m["id"], "succeeded", 3)
            await all_have(ctx, m["id"], "disabled", 3)
        endpoint = await get_endpoint(ctx, m["id"], ep.endpoint.id)
        assert endpoint.disabled and endpoint.disabled_reason == "gone"
        assert len(transport.ids_sent_to("gone.example")) == 1
        assert attempts_metric(ctx, "gone") == 1


async def test_retry_after_moves_the_next_attempt(tmp_path: Path) -> None:
    """A Retry-After longer than the scheduled delay sets next_attempt_at that far ahead, logged per attempt."""
    async with context(tmp_path) as ctx:
        m = await create_merchant(ctx, "shop")
        await events_to(ctx, m["id"], ["http://busy.example/"])

        async def busy(url: str, headers: dict[str, str], body: bytes) -> TransportResult:
            return ok(503, retry_after=7200)

        async with running(DeliveryWorker(ctx, FakeTransport(busy))):
            [d] = await eventually(
                lambda: deliveries(ctx, m["id"], "pending"), lambda ds: len(ds) == 1 and ds[0]["attempts"] == 1
            )
        full = await get_delivery(ctx, m["id"], d["id"])
        assert [(a.attempt, a.status_code, a.error) for a in full.attempts] == [(1, 503, "HTTP 503")]
        assert d["next_attempt_at"] > d["updated_at"]  # RFC 3339 strings of one format sort as times
        assert d["next_attempt_at"][:13] != d["updated_at"][:13]  # two hours away, a different hour
