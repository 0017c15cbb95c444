"""The webhook delivery worker: signs and sends due deliveries, records outcomes, schedules retries.

One loop loads what is due and starts a task per delivery without waiting for any of them
(pipelining); each task waits for a slot on its host (`settings.webhook_per_host` in flight) and
a global slot (`settings.webhook_concurrency`), so a slow or dead endpoint only ever holds its
own slots. A
delivery is "in flight" from the moment it is loaded until its outcome is committed, and is never
loaded twice meanwhile. Finished attempts go to one recorder that writes every outcome waiting at
that moment in a single transaction.

Shop gateway notifies (易支付 / V免签, `compat_protocol` set on the row) ride the same outbox: a GET of
the shop's notify URL with a query signed at each attempt, done when the body acknowledges it
(`success`), retried on the same schedule otherwise.

At-least-once: an outcome is recorded after the HTTP exchange; a crash between a receiver's 2xx
and the recording means the delivery is sent again, with the same `webhook-id`. Receivers dedupe.
On shutdown the attempts that already finished are still recorded (under `asyncio.shield`).

Several instances on one database: a delivery is sent by the instance that holds its claim
(`claimed_by`, `lease_until`). Fresh deliveries are committed already claimed by the instance whose
worker takes them from memory; the poll claims what it loaded before sending it (on PostgreSQL
with `FOR UPDATE SKIP LOCKED`). The worker renews the leases of what it has in flight every third
of `settings.webhook_lease` and clears the claim when it records the outcome; on a clean stop it
gives back the claims it still holds. An instance that dies leaves its claims to run out, and then
any instance's poll takes those deliveries (sent again, with the same `webhook-id`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import random
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import structlog

from bridge.core.backoff import RetryPolicy, delay_for
from bridge.core.signing import signature_header
from bridge.ids import new_id
from bridge.services import compat_notify
from bridge.services.context import Context
from bridge.store import deliveries as store
from bridge.store import endpoints as endpoints_store
from bridge.store.database import Row, Tx
from bridge.transport import TransportResult, WebhookTransport

__all__ = ["DeliveryWorker", "Outcome", "classify", "classify_compat", "live_secrets"]

log = structlog.get_logger("bridge.webhooks")

QUEUED_PER_TARGET = 16  # deliveries a database load may hold in memory per endpoint / notify URL
RECENT_SETTLED = 100_000  # ids remembered to drop late fresh hand-overs of deliveries already attempted
FRESH_PER_TARGET = 256  # deliveries handed over at commit that may wait in memory per host
BATCH = 500  # deliveries loaded per query
POLL_S = 1.0  # the longest the loop sleeps without looking at the database
RENEW_CHUNK = 500  # ids per lease renewal statement


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # the delivery's new status: succeeded, pending (retry later), failed, disabled
    metric: str  # success, http_error, timeout, network_error, gone, forbidden_target
    next_in: float | None  # seconds to the next attempt when still pending
    disable_endpoint: bool = False


def classify(result: TransportResult, *, attempt: int, policy: RetryPolicy, rng: random.Random) -> Outcome:
    """What the result of attempt number `attempt` means for the delivery (pure)."""
    if result.status is not None and 200 <= result.status < 300:
        return Outcome("succeeded", "success", None)
    if result.status == 410:
        return Outcome("disabled", "gone", None, disable_endpoint=True)
    if result.error and result.error.startswith("forbidden_target"):
        return Outcome("failed", "forbidden_target", None)  # a configuration problem: retrying cannot help
    if result.status is not None:
        metric = "http_error"
    elif result.error == "timeout":
        metric = "timeout"
    else:
        metric = "network_error"
    wait = delay_for(attempt + 1, policy, rng, result.retry_after)
    if wait is None:
        return Outcome("failed", metric, None)
    return Outcome("pending", metric, wait)


def classify_compat(
    result: TransportResult, protocol: str, *, attempt: int, policy: RetryPolicy, rng: random.Random
) -> Outcome:
    """A compat notify: done only when a 2xx body acknowledges it; anything else is retried on schedule
    (a shop answering 410 is not a webhook endpoint to disable)."""
    if result.status is not None and 200 <= result.status < 300 and compat_notify.is_ack(protocol, result.body):
        return Outcome("succeeded", "success", None)
    if result.error and result.error.startswith("forbidden_target"):
        return Outcome("failed", "forbidden_target", None)
    metric = (
        "http_error" if result.status is not None else ("timeout" if result.error == "timeout" else "network_error")
    )
    wait = delay_for(attempt + 1, policy, rng, result.retry_after)
    return Outcome("failed", metric, None) if wait is None else Outcome("pending", metric, wait)


def _compat_protocol(row: Row | dict[str, Any]) -> str | None:
    """The shop gateway protocol of a compat notify row; None for a webhook (fresh hand-overs are webhooks)."""
    value = row.get("compat_protocol") if isinstance(row, dict) else row["compat_protocol"]
    return None if value is None else str(value)


def live_secrets(row: Row | dict[str, Any], now: int) -> list[str]:
    """The secrets to sign with: the endpoint's (plus its previous one during rotation), or the
    merchant's default secret for an order's notify_url."""
    if row["endpoint_id"] is None:
        return [str(row["webhook_secret"])]
    out = [str(row["secret"])]
    if row["old_secret"] and row["old_secret_expires_at"] and row["old_secret_expires_at"] > now:
        out.append(str(row["old_secret"]))
    return out


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One finished HTTP attempt, waiting to be recorded."""

    row: Row | dict[str, Any]
    result: TransportResult
    outcome: Outcome
    at: int  # Unix ms when it finished

    @property
    def number(self) -> int:
        return int(self.row["attempts"]) + 1

    @property
    def next_attempt_at(self) -> int | None:
        return None if self.outcome.next_in is None else self.at + int(self.outcome.next_in * 1000)

    @property
    def error(self) -> str | None:
        if self.result.error or self.outcome.status == "succeeded":
            return self.result.error
        return f"HTTP {self.result.status}"


@dataclass
class _Target:
    slots: asyncio.Semaphore
    users: int = 0


@dataclass
class _Recorder:
    finished: list[_Attempt] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False


class DeliveryWorker:
    def __init__(
        self,
        ctx: Context,
        transport: WebhookTransport,
        rng: random.Random | None = None,
        *,
        per_target: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(schedule=ctx.settings.schedule())
        self.per_target = per_target or ctx.settings.webhook_per_host
        self.instance = new_id("inst")  # who holds this worker's claims (a restart is a new claimant)
        self.lease_ms = int(ctx.settings.webhook_lease * 1000)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._global = asyncio.Semaphore(ctx.settings.webhook_concurrency)
        self._targets: dict[str, _Target] = {}
        self._recorder = _Recorder()
        self._gone: set[str] = set()  # endpoints that answered 410 Gone (disabled in the database)
        self._left_in_db = False  # a fresh delivery was left for the database poll (its host was full)
        # Deliveries that left the in-flight set while a database load was running: the load's
        # snapshot may predate their recorded outcome, so its rows for them are stale.
        self._settled_during_load: set[str] | None = None
        # Recently settled ids: a fresh hand-over that arrives after its delivery was already sent
        # from a database load (and settled) must not send it again.
        self._recently_settled: collections.OrderedDict[str, None] = collections.OrderedDict()

    @property
    def in_flight(self) -> frozenset[str]:
        """Ids of the deliveries loaded and not yet recorded."""
        return frozenset(self._in_flight)

    async def run(self) -> None:
        """Deliver until cancelled; then stop sending and record what already finished."""
        self.ctx.bus.claimant = (self.instance, self.lease_ms)
        recorder = asyncio.create_task(self._record_loop(), name="webhook-recorder")
        fresh = asyncio.create_task(self._fresh_loop(), name="webhook-fresh")
        renewer = asyncio.create_task(self._renew_loop(), name="webhook-lease-renewer")
        try:
            await self._dispatch_loop()
        finally:
            if self.ctx.bus.claimant is not None and self.ctx.bus.claimant[0] == self.instance:
                self.ctx.bus.claimant = None
            for helper in (fresh, renewer):
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await helper
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._recorder.stopping = True
            self._recorder.ready.set()
            await asyncio.shield(recorder)
            await asyncio.shield(self._release(None))  # what it still holds: due again for any instance

    async def _release(self, ids: list[str] | None) -> None:
        """Give up claims (None: all this worker holds); a failure only leaves them to run out."""
        try:
            await self.ctx.db.write(functools.partial(_release, ids, self.instance))
        except Exception as e:
            log.warning("webhook.release_failed", error=repr(e))

    async def _renew_loop(self) -> None:
        """Keep the leases of the deliveries in flight here from running out while they wait or run."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            ids = sorted(self._in_flight)
            until = self.ctx.clock.now_ms() + self.lease_ms
            for i in range(0, len(ids), RENEW_CHUNK):
                chunk = ids[i : i + RENEW_CHUNK]
                try:
                    await self.ctx.db.write(functools.partial(_renew, chunk, self.instance, until))
                except Exception as e:  # a lease that runs out only means a possible second send
                    log.warning("webhook.renew_failed", error=repr(e))

    async def _dispatch_loop(self) -> None:
        bus = self.ctx.bus
        while True:
            bus.deliveries.clear()  # before the query: a wake-up during it is not lost
            now = self.ctx.clock.now_ms()
            exclude = frozenset(self._in_flight)
            self._settled_during_load = set()

            def load(tx: Tx, now: int = now, exclude: frozenset[str] = exclude) -> tuple[list[Row], int | None]:
                due = store.due_deliveries(tx, now=now, limit=BATCH, per_target=QUEUED_PER_TARGET, exclude=exclude)
                return due, store.next_due_after(tx, now)

            try:
                due, next_at = await self.ctx.db.read(load)
            except Exception as e:  # the database may be busy: try again shortly
                log.warning("webhook.load_failed", error=repr(e))
                due, next_at = [], None
            settled, self._settled_during_load = self._settled_during_load or set(), None
            due = [row for row in due if str(row["id"]) not in settled and str(row["id"]) not in self._in_flight]
            if due:
                await self._claim_and_start(due)
            if len(due) >= BATCH:
                await asyncio.sleep(0)  # more are due: load the next batch right away
                continue
            wait = POLL_S
            if next_at is not None:
                wait = min(wait, max(0.0, (next_at - self.ctx.clock.now_ms()) / 1000))
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the event is set, and the worker would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await bus.deliveries.wait()

    async def _claim_and_start(self, due: list[Row]) -> None:
        """Claim the loaded deliveries (another instance may have taken some meanwhile) and send the
        claimed ones, with their attempt counts as of the claim."""
        now = self.ctx.clock.now_ms()
        ids = [str(row["id"]) for row in due]
        try:
            claimed = await self.ctx.db.write(
                lambda tx: store.claim(tx, ids, by=self.instance, now=now, until=now + self.lease_ms)
            )
        except Exception as e:  # the database may be busy: the next poll tries again
            log.warning("webhook.claim_failed", error=repr(e))
            return
        busy: list[str] = []
        for row in due:
            delivery_id = str(row["id"])
            if delivery_id not in claimed:
                continue
            if delivery_id in self._in_flight:  # started from memory while the claim ran: hand it back
                busy.append(delivery_id)
                continue
            fields = dict(zip(row.keys(), row, strict=True))
            fields["attempts"] = claimed[delivery_id]
            self._start(fields)
        if busy:
            await self._release(busy)

    def _settle(self, delivery_id: str) -> None:
        self._in_flight.discard(delivery_id)
        if self._settled_during_load is not None:
            self._settled_during_load.add(delivery_id)
        self._recently_settled[delivery_id] = None
        if len(self._recently_settled) > RECENT_SETTLED:
            self._recently_settled.popitem(last=False)

    def _start(self, row: Row | dict[str, Any]) -> None:
        """Send a delivery unless it is already in flight (a database load and the fresh hand-over
        may both see it)."""
        if str(row["id"]) in self._in_flight:
            return
        self._in_flight.add(str(row["id"]))
        task = asyncio.create_task(self._deliver(row), name=f"webhook-delivery-{row['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fresh_loop(self) -> None:
        """Send deliveries the moment their transaction commits, without reading them back.

        A delivery whose host already has FRESH_PER_TARGET waiting stays for the database poll,
        as does anything lost here (the rows are committed: the poll is the safety net)."""
        bus = self.ctx.bus
        while True:
            bus.fresh_ready.clear()
            left: list[str] = []
            while bus.fresh:
                row = bus.fresh.popleft()
                if str(row["id"]) in self._recently_settled:
                    continue  # already sent from a database load; retries come from the database
                lease_until = row.get("lease_until")
                if lease_until is None or lease_until <= self.ctx.clock.now_ms():
                    continue  # not claimed for this worker, or its claim ran out: the poll takes it
                host = urlsplit(str(row["url"])).netloc.lower()
                target = self._targets.get(host)
                if target is not None and target.users >= FRESH_PER_TARGET:
                    left.append(str(row["id"]))
                    continue
                self._start(row)
            if left:  # committed claimed by this worker: give them back so a poll can take them
                await self._release(left)
                self._left_in_db = True
            await bus.fresh_ready.wait()

    async def _deliver(self, row: Row | dict[str, Any]) -> None:
        host = urlsplit(str(row["url"])).netloc.lower()
        target = self._targets.get(host)
        if target is None:
            target = self._targets[host] = _Target(asyncio.Semaphore(self.per_target))
        target.users += 1
        endpoint_id = row["endpoint_id"]
        try:
            async with target.slots, self._global:  # the host's slot first: waiting for it holds no global slot
                if endpoint_id is not None and endpoint_id in self._gone:
                    # It answered 410 while this one waited: the recorder disables this delivery too.
                    self._settle(str(row["id"]))
                    return
                result = await self._send(row)
            number = int(row["attempts"]) + 1
            protocol = _compat_protocol(row)
            if protocol is None:
                outcome = classify(result, attempt=number, policy=self.policy, rng=self.rng)
            else:
                outcome = classify_compat(result, protocol, attempt=number, policy=self.policy, rng=self.rng)
            attempt = _Attempt(row, result, outcome, self.ctx.clock.now_ms())
            if attempt.outcome.disable_endpoint and endpoint_id is not None:
                self._gone.add(str(endpoint_id))
            # Handed to the recorder synchronously: from here on a cancellation cannot lose it.
            self._recorder.finished.append(attempt)
            self._recorder.ready.set()
        except BaseException:
            self._settle(str(row["id"]))  # not sent (or sent without an answer): due again
            raise
        finally:
            target.users -= 1
            if target.users == 0:
                del self._targets[host]

    async def _send(self, row: Row | dict[str, Any]) -> TransportResult:
        now = self.ctx.clock.now_ms()
        timestamp = now // 1000
        body = str(row["body"]).encode()
        event_id = str(row["event_id"])
        try:
            if _compat_protocol(row) is not None:  # signed now: a V2 notify needs a fresh timestamp each time
                url = compat_notify.notify_url_for(row, now)
                return await self._timed(
                    self.transport.send(url, {}, b"", self.ctx.settings.webhook_timeout, method="GET")
                )
            headers = {
                "webhook-id": event_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": signature_header(live_secrets(row, now), event_id, timestamp, body),
            }
            return await self._timed(
                self.transport.send(str(row["url"]), headers, body, self.ctx.settings.webhook_timeout)
            )
        except Exception as e:  # a bug or a broken secret: an attempt that failed, retried on schedule
            log.error("webhook.send_crashed", delivery_id=row["id"], error=repr(e))
            return TransportResult(None, None, f"internal_error: {type(e).__name__}", 0.0)

    async def _timed(self, sending: Awaitable[TransportResult]) -> TransportResult:
        result = await sending
        self.ctx.metrics.webhook_seconds.observe(result.elapsed_ms / 1000)
        return result

    async def _record_loop(self) -> None:
        rec = self._recorder
        while True:
            if not rec.finished:
                if rec.stopping:
                    return
                rec.ready.clear()
                await rec.ready.wait()
                continue
            batch, rec.finished = rec.finished, []
            try:
                await self._record(batch)
            except Exception as e:  # never let the recorder die: nothing would be recorded after it
                log.error("webhook.recorder_crashed", error=repr(e))

    async def _record(self, batch: list[_Attempt]) -> None:
        """Record a batch of outcomes in one transaction (one by one if that fails, so one bad row
        cannot lose the others)."""
        try:
            await self.ctx.db.write(functools.partial(_apply, batch))
            recorded = batch
        except Exception as e:
            log.warning("webhook.record_batch_failed", size=len(batch), error=repr(e))
            recorded = []
            for a in batch:
                try:
                    await self.ctx.db.write(functools.partial(_apply, [a]))
                    recorded.append(a)
                except Exception as e2:  # left pending: it will be sent again (at-least-once)
                    log.error("webhook.record_failed", delivery_id=a.row["id"], error=repr(e2))
        for a in batch:
            self._settle(str(a.row["id"]))
        # Re-plan when a retry is due before the next regular poll, or a host that was full has room
        # again; otherwise the poll every POLL_S finds what is due (fresh ones come in memory).
        soon = self.ctx.clock.now_ms() + int(POLL_S * 1000)
        if self._left_in_db or any(a.next_attempt_at is not None and a.next_attempt_at <= soon for a in batch):
            self._left_in_db = False
            self.ctx.bus.deliveries.set()
        for a in recorded:
            self._report(a)

    def _report(self, a: _Attempt) -> None:
        self.ctx.metrics.webhook_attempts.labels(a.outcome.metric).inc()
        event = {
            "succeeded": "webhook.delivered",
            "pending": "webhook.retry",
            "failed": "webhook.failed",
            "disabled": "webhook.endpoint_disabled",
        }[a.outcome.status]
        log.info(
            event,
            delivery_id=a.row["id"],
            event_id=a.row["event_id"],
            event_type=a.row["event_type"],
            endpoint_id=a.row["endpoint_id"],
            compat=_compat_protocol(a.row),  # the shop gateway protocol of a compat notify, else None
            attempt=a.number,
            status_code=a.result.status,
            error=a.result.error,
            wait_s=a.outcome.next_in,
        )


def _renew(ids: list[str], by: str, until: int, tx: Tx) -> None:
    store.renew(tx, ids, by=by, until=until)


def _release(ids: list[str] | None, by: str, tx: Tx) -> None:
    store.release(tx, ids, by=by)


def _apply(batch: list[_Attempt], tx: Tx) -> None:
    for a in batch:
        _apply_one(tx, a)


def _apply_one(tx: Tx, a: _Attempt) -> None:
    store.record_attempt(
        tx,
        str(a.row["id"]),
        attempt=a.number,
        now=a.at,
        status=a.outcome.status,
        status_code=a.result.status,
        error=a.error,
        duration_ms=int(a.result.elapsed_ms),
        next_attempt_at=a.next_attempt_at,
    )
    if a.outcome.disable_endpoint and a.row["endpoint_id"] is not None:
        endpoints_store.disable_endpoint(tx, str(a.row["endpoint_id"]), now=a.at, reason="gone")
