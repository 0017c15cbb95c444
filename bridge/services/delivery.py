"""The webhook delivery worker: one loop that claims, sends, records and renews.

Each turn of `DeliveryWorker._loop`:

1. **Claim.** Fresh deliveries arrive already claimed: their transaction committed them claimed
   by this instance (`claimed_by`, `lease_until`: `EventBus.claim`) and handed them over in
   memory, so they go out at once, without a read. Due deliveries nobody holds (retries, compat
   notifies, whatever another instance left when it died, anything that did not fit in memory)
   are claimed from the database at every poll (`POLL_S`), at once after a wake-up
   (`EventBus.deliveries`: a manual retry, a compat notify) and when a recorded retry falls due.
   On PostgreSQL the claim skips rows another instance is claiming (`FOR UPDATE SKIP LOCKED`).
2. **Send.** Every claimed delivery gets a task that waits for a slot on its host
   (`settings.webhook_per_host`) and a global one (`settings.webhook_concurrency`), signs and sends,
   and puts the attempt in `_finished`. A slow or dead endpoint only ever holds its own slots.
3. **Record.** The attempts finished by then are written in one transaction (the outcome, the
   attempt log, the retry's time or the end, the claim cleared).
4. **Renew.** Every third of `settings.webhook_lease` the leases of what is still claimed here
   (`_in_flight`: claimed and not yet recorded) are extended.

The loop never waits for the database: the claim, the recording and the renewal each run as one
job at a time beside it, and a later turn takes the job's result. So a fresh delivery starts at
the next turn, whatever the database is doing.

A delivery is in `_in_flight` from its claim to its recorded outcome; the database claim keeps
every other instance (and this one's own poll) away from it meanwhile. An endpoint that answered
410 is remembered in `_gone`, so its deliveries still waiting for a slot are not sent (recording
the 410 disables them). Besides the work handed from one step to the next (`_finished`,
`_give_back`) and the jobs under way, that is all the state there is.

Shop gateway notifies (易支付 / V免签, `Outgoing.compat`) ride the same outbox: a GET of the
shop's notify URL with a query signed at each attempt, done when the body acknowledges it
(`success`), retried on the same schedule otherwise.

At-least-once: an outcome is recorded after the HTTP exchange; a crash between a receiver's 2xx
and the recording means the delivery is sent again, with the same `webhook-id`. Receivers dedupe.
On shutdown the attempts that already finished are still recorded (under `asyncio.shield`) and
the claims still held are given back; an instance that dies leaves its claims to run out, and
then any instance's poll takes those deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog

from bridge.core.backoff import RetryPolicy, delay_for
from bridge.core.models.delivery import Outgoing
from bridge.core.models.ids import DeliveryId, EndpointId, InstanceId
from bridge.core.signing import signature_header
from bridge.core.states import DeliveryStatus
from bridge.errors import SendFailure
from bridge.ids import new_id
from bridge.services import compat_notify
from bridge.services.context import Context
from bridge.store import deliveries as store
from bridge.store import endpoints as endpoints_store
from bridge.store.database import Tx
from bridge.transport import TransportResult, WebhookTransport

__all__ = ["DeliveryWorker", "Outcome", "classify", "classify_compat"]

log = structlog.get_logger("bridge.webhooks")

QUEUED_PER_TARGET = 16  # deliveries one claim may take per endpoint / notify URL
FRESH_PER_TARGET = 256  # fresh deliveries that may wait in memory per host (the rest: the next poll's)
BATCH = 500  # deliveries claimed per poll
POLL_S = 1.0  # the longest the loop goes without looking in the database
RENEW_CHUNK = 500  # ids per lease renewal statement

J = TypeVar("J")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: DeliveryStatus  # the delivery's new status (PENDING: a retry in `next_in` seconds)
    metric: str  # success, http_error, timeout, network_error, gone, forbidden_target
    next_in: float | None  # seconds to the next attempt when still pending
    disable_endpoint: bool = False


def _retry(result: TransportResult, *, attempt: int, policy: RetryPolicy, rng: random.Random) -> Outcome:
    """A failed attempt: failed at once if sending again cannot help, else retried on schedule until it ends."""
    failure = result.failure
    if failure is not None and not failure.retryable:
        return Outcome(DeliveryStatus.FAILED, failure.metric, None)  # a configuration problem
    metric = "http_error" if result.status is not None else (failure or SendFailure.NETWORK).metric
    wait = delay_for(attempt + 1, policy, rng, result.retry_after)
    if wait is None:
        return Outcome(DeliveryStatus.FAILED, metric, None)
    return Outcome(DeliveryStatus.PENDING, metric, wait)


def classify(result: TransportResult, *, attempt: int, policy: RetryPolicy, rng: random.Random) -> Outcome:
    """What the result of attempt number `attempt` means for a webhook delivery (pure)."""
    if result.status is not None and 200 <= result.status < 300:
        return Outcome(DeliveryStatus.SUCCEEDED, "success", None)
    if result.status == 410:
        return Outcome(DeliveryStatus.DISABLED, "gone", None, disable_endpoint=True)
    return _retry(result, attempt=attempt, policy=policy, rng=rng)


def classify_compat(
    result: TransportResult, protocol: str, *, attempt: int, policy: RetryPolicy, rng: random.Random
) -> Outcome:
    """A compat notify: done only when a 2xx body acknowledges it; anything else is retried on schedule
    (a shop answering 410 is not a webhook endpoint to disable)."""
    if result.status is not None and 200 <= result.status < 300 and compat_notify.is_ack(protocol, result.body):
        return Outcome(DeliveryStatus.SUCCEEDED, "success", None)
    return _retry(result, attempt=attempt, policy=policy, rng=rng)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One finished HTTP attempt, waiting to be recorded."""

    delivery: Outgoing
    result: TransportResult
    outcome: Outcome
    at: int  # Unix ms when it finished

    @property
    def number(self) -> int:
        return self.delivery.attempts + 1

    @property
    def next_attempt_at(self) -> int | None:
        return None if self.outcome.next_in is None else self.at + int(self.outcome.next_in * 1000)

    @property
    def error(self) -> str | None:
        if self.result.failure is not None or self.outcome.status is DeliveryStatus.SUCCEEDED:
            return self.result.error
        return f"HTTP {self.result.status}"


@dataclass
class _Target:
    slots: asyncio.Semaphore
    users: int = 0  # deliveries to this host waiting for a slot or being sent


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
        self.instance = InstanceId(new_id("inst"))  # who holds this worker's claims (a restart is a new one)
        self.lease_ms = int(ctx.settings.webhook_lease * 1000)
        # Claimed here, outcome not yet recorded: id -> its attempt count when claimed (one round).
        self._in_flight: dict[DeliveryId, int] = {}
        self._finished: list[_Attempt] = []  # attempts done, recorded at the next turn
        self._gone: set[EndpointId] = set()  # endpoints that answered 410 Gone
        self._wake = asyncio.Event()  # something to do (the bus's `fresh_ready` once running)
        self._look = True  # claim from the database at the next turn, whatever the time
        self._targets: dict[str, _Target] = {}
        self._global = asyncio.Semaphore(ctx.settings.webhook_concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._give_back: list[DeliveryId] = []  # fresh ones that did not fit: their claims go back
        # The database jobs beside the loop, at most one of each kind at a time.
        self._claiming: asyncio.Task[tuple[list[Outgoing], int]] | None = None
        self._recording: asyncio.Task[int | None] | None = None
        self._renewing: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> frozenset[DeliveryId]:
        """Ids of the deliveries claimed here and not yet recorded."""
        return frozenset(self._in_flight)

    async def run(self) -> None:
        """Deliver until cancelled; then stop sending, record what already finished, give back the rest."""
        bus = self.ctx.bus
        bus.claimant = (self.instance, self.lease_ms)
        # The loop sleeps on the bus's `fresh_ready`: set at commit when fresh deliveries arrive, and
        # by the worker itself when a send or a job ends. A wake-up on `bus.deliveries` also means
        # "claim from the database now".
        self._wake = bus.fresh_ready
        relays = [asyncio.create_task(self._relay(bus.deliveries), name="webhook-wake-relay")]
        try:
            await self._loop()
        finally:
            if bus.claimant is not None and bus.claimant[0] == self.instance:
                bus.claimant = None
            for task in [*relays, *self._tasks]:
                task.cancel()
            await asyncio.gather(*relays, *self._tasks, return_exceptions=True)
            await asyncio.shield(self._wind_down())

    async def _loop(self) -> None:
        """Claim, send, record, renew, until cancelled. The loop itself never waits for the database:
        each of claim, record and renew runs as one job at a time beside it (`_job`), and the turn
        after a job ends takes its result, so fresh deliveries always start at the next turn."""
        clock = self.ctx.clock
        renew_every = max(1, self.lease_ms // 3)
        next_poll = 0  # Unix ms: claim from the database when this passes (or on a wake-up)
        next_renewal = clock.now_ms() + renew_every
        while True:
            self._wake.clear()
            now = clock.now_ms()
            # 1. Claim: fresh deliveries come claimed; due ones are claimed from the database.
            self._take_fresh(now)
            if self._claiming is not None and self._claiming.done():
                claimed, next_poll = self._claiming.result()
                self._claiming = None
                for delivery in claimed:
                    self._start(delivery)
            if self._claiming is None and (self._look or now >= next_poll):
                self._look = False
                self._claiming = self._job(self._claim_due(now))
            # 2. Send: each claimed delivery has a task of its own (`_deliver`), already under way.
            # 3. Record what finished, in one transaction; a retry due before the next poll moves it up.
            if self._recording is not None and self._recording.done():
                soonest, self._recording = self._recording.result(), None
                if soonest is not None:
                    next_poll = min(next_poll, soonest)
            if self._finished and self._recording is None:
                batch, self._finished = self._finished, []
                self._recording = self._job(self._record(batch))
            # 4. Renew the leases of what is still claimed here (and give back what did not fit).
            if self._renewing is not None and self._renewing.done():
                self._renewing = None
            if self._renewing is None and (now >= next_renewal or self._give_back):
                if now >= next_renewal:
                    next_renewal = now + renew_every
                    ids = sorted(self._in_flight)
                else:
                    ids = []
                give_back, self._give_back = self._give_back, []
                self._renewing = self._job(self._renew_and_release(now, ids, give_back))
            wait_s = max(0.0, (min(next_poll, next_renewal) - clock.now_ms()) / 1000)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the event is set, and the worker would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()

    def _job(self, work: Coroutine[Any, Any, J]) -> asyncio.Task[J]:
        """Run a database step beside the loop; its end wakes the loop. Jobs are not cancelled on stop:
        `_wind_down` waits for them (a claim's rows are then given back, a recording completes)."""
        task = asyncio.create_task(work, name="webhook-job")
        task.add_done_callback(lambda _: self._wake.set())
        return task

    async def _relay(self, event: asyncio.Event) -> None:
        """Turn a wake-up ("look in the database now") into a turn of the loop that claims."""
        while True:
            await event.wait()
            event.clear()
            self._look = True
            self._wake.set()

    def _take_fresh(self, now: int) -> None:
        """Start the deliveries handed over at commit. One whose claim is not this worker's live one
        (committed unclaimed, or it ran out while waiting) is the database poll's; so is one whose
        host already has FRESH_PER_TARGET waiting (its claim is given back at step 4)."""
        fresh = self.ctx.bus.fresh
        while fresh:
            delivery = fresh.popleft()
            if delivery.lease_until is None or delivery.lease_until <= now:
                continue
            target = self._targets.get(_host(delivery.url))
            if target is not None and target.users >= FRESH_PER_TARGET:
                self._give_back.append(delivery.id)
                continue
            self._start(delivery)

    async def _claim_due(self, now: int) -> tuple[list[Outgoing], int]:
        """Claim due deliveries nobody holds; return them and when to look again (Unix ms)."""
        poll = now + int(POLL_S * 1000)

        def find(tx: Tx) -> tuple[list[DeliveryId], int | None]:
            return store.due(tx, now=now, limit=BATCH, per_target=QUEUED_PER_TARGET), store.next_due_after(tx, now)

        claim = functools.partial(store.claim_outgoing, by=self.instance, now=now, until=now + self.lease_ms)
        try:
            # A read first: most polls find nothing due (fresh deliveries came claimed) and write nothing.
            ids, next_due = await self.ctx.db.read(find)
            claimed = await self.ctx.db.write(lambda tx: claim(tx, ids)) if ids else []
        except Exception as e:  # the database may be busy: the next poll tries again
            log.warning("webhook.claim_failed", error=repr(e))
            return [], poll
        if len(ids) >= BATCH:
            return claimed, now  # more may be due: claim the next batch at the next turn
        return claimed, poll if next_due is None else min(poll, next_due)

    def _start(self, delivery: Outgoing) -> None:
        """Send a claimed delivery, unless this round of it is in flight here already (a poll may claim
        one whose lease ran out while it waited here: this worker holds it again, and it is sent once).
        A claim with another attempt count is the next round: its outcome was just recorded, and the
        recorder had not yet said so."""
        if self._in_flight.get(delivery.id) == delivery.attempts:
            return
        self._in_flight[delivery.id] = delivery.attempts
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-delivery-{delivery.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Outgoing) -> None:
        host = _host(delivery.url)
        target = self._targets.get(host)
        if target is None:
            target = self._targets[host] = _Target(asyncio.Semaphore(self.per_target))
        target.users += 1
        try:
            async with target.slots, self._global:  # the host's slot first: waiting for it holds no global slot
                if delivery.endpoint_id is not None and delivery.endpoint_id in self._gone:
                    # It answered 410 while this one waited: recording that disables this delivery too.
                    self._settle(delivery)
                    return
                result = await self._send(delivery)
            if delivery.compat is None:
                outcome = classify(result, attempt=delivery.attempts + 1, policy=self.policy, rng=self.rng)
            else:
                outcome = classify_compat(
                    result, delivery.compat.protocol, attempt=delivery.attempts + 1, policy=self.policy, rng=self.rng
                )
            if outcome.disable_endpoint and delivery.endpoint_id is not None:
                self._gone.add(delivery.endpoint_id)
            # Handed over synchronously: from here on a cancellation cannot lose it.
            self._finished.append(_Attempt(delivery, result, outcome, self.ctx.clock.now_ms()))
            self._wake.set()
        except BaseException:
            self._settle(delivery)  # not sent (or sent without an answer): due again
            raise
        finally:
            target.users -= 1
            if target.users == 0:
                del self._targets[host]

    def _settle(self, delivery: Outgoing) -> None:
        """This round of the delivery is over here (recorded, or not sent at all)."""
        if self._in_flight.get(delivery.id) == delivery.attempts:
            del self._in_flight[delivery.id]

    async def _send(self, delivery: Outgoing) -> TransportResult:
        now = self.ctx.clock.now_ms()
        timeout = self.ctx.settings.webhook_timeout
        try:
            if delivery.compat is not None:  # signed now: a V2 notify needs a fresh timestamp each time
                url = compat_notify.notify_url_for(delivery.url, delivery.compat, now)
                result = await self.transport.send(url, {}, b"", timeout, method="GET")
            else:
                timestamp = now // 1000
                body = delivery.body.encode()
                headers = {
                    "webhook-id": delivery.event_id,
                    "webhook-timestamp": str(timestamp),
                    "webhook-signature": signature_header(delivery.secrets(now), delivery.event_id, timestamp, body),
                }
                result = await self.transport.send(delivery.url, headers, body, timeout)
        except Exception as e:  # a bug or a broken secret: an attempt that failed, retried on schedule
            log.error("webhook.send_crashed", delivery_id=delivery.id, error=repr(e))
            return TransportResult.failed(SendFailure.INTERNAL, 0.0, type(e).__name__)
        self.ctx.metrics.webhook_seconds.observe(result.elapsed_ms / 1000)
        return result

    async def _record(self, batch: list[_Attempt]) -> int | None:
        """One transaction for the batch (one per attempt if that fails, so one bad row cannot lose
        the others); an attempt whose recording fails stays pending and is sent again. Returns when
        the soonest retry among them is due (Unix ms), if any. Never raises: it runs on its own,
        and a stop waits for it rather than cancelling it."""
        recorded: list[_Attempt] = []
        try:
            await self.ctx.db.write(functools.partial(_apply, batch))
            recorded = batch
        except Exception as e:
            log.warning("webhook.record_batch_failed", size=len(batch), error=repr(e))
            for a in batch:
                try:
                    await self.ctx.db.write(functools.partial(_apply, [a]))
                    recorded.append(a)
                except Exception as e2:
                    log.error("webhook.record_failed", delivery_id=a.delivery.id, error=repr(e2))
        for a in batch:
            self._settle(a.delivery)
        for a in recorded:
            self._report(a)
        retries = [a.next_attempt_at for a in recorded if a.next_attempt_at is not None]
        return min(retries) if retries else None

    async def _renew_and_release(self, now: int, ids: list[DeliveryId], give_back: list[DeliveryId]) -> None:
        """Keep the leases of the deliveries claimed here from running out while they wait or run, and
        give back the claims of fresh deliveries that did not fit (due again for any poll)."""
        for i in range(0, len(ids), RENEW_CHUNK):
            renew = functools.partial(_renew, ids[i : i + RENEW_CHUNK], self.instance, now + self.lease_ms)
            try:
                await self.ctx.db.write(renew)
            except Exception as e:  # a lease that runs out only means a possible second send
                log.warning("webhook.renew_failed", error=repr(e))
        if give_back:
            await self._release(give_back)

    async def _release(self, ids: list[DeliveryId] | None) -> None:
        """Give up claims (None: every one this worker holds); a failure only leaves them to run out."""
        try:
            await self.ctx.db.write(lambda tx: store.release(tx, ids, by=self.instance))
        except Exception as e:
            log.warning("webhook.release_failed", error=repr(e))

    async def _wind_down(self) -> None:
        """After the loop: let the jobs under way end (a recording completes; what a claim took is not
        sent), record what finished, then give back every claim still held: due again for any instance."""
        for job in (self._claiming, self._recording, self._renewing):
            if job is not None:
                await asyncio.gather(job, return_exceptions=True)
        if self._finished:
            batch, self._finished = self._finished, []
            await self._record(batch)
        await self._release(None)

    def _report(self, a: _Attempt) -> None:
        self.ctx.metrics.webhook_attempts.labels(a.outcome.metric).inc()
        event = {
            DeliveryStatus.SUCCEEDED: "webhook.delivered",
            DeliveryStatus.PENDING: "webhook.retry",
            DeliveryStatus.FAILED: "webhook.failed",
            DeliveryStatus.DISABLED: "webhook.endpoint_disabled",
        }[a.outcome.status]
        d = a.delivery
        log.info(
            event,
            delivery_id=d.id,
            event_id=d.event_id,
            event_type=d.event_type,
            endpoint_id=d.endpoint_id,
            compat=None if d.compat is None else d.compat.protocol,  # a compat notify's gateway protocol
            attempt=a.number,
            status_code=a.result.status,
            error=a.result.error,
            wait_s=a.outcome.next_in,
        )


def _host(url: str) -> str:
    return urlsplit(url).netloc.lower()


def _renew(ids: list[DeliveryId], by: InstanceId, until: int, tx: Tx) -> int:
    return store.renew(tx, ids, by=by, until=until)


def _apply(batch: list[_Attempt], tx: Tx) -> None:
    for a in batch:
        store.record_attempt(
            tx,
            a.delivery.id,
            now=a.at,
            status=a.outcome.status,
            attempts=a.number,
            status_code=a.result.status,
            error=a.error,
            duration_ms=int(a.result.elapsed_ms),
            next_attempt_at=a.next_attempt_at,
        )
        if a.outcome.disable_endpoint and a.delivery.endpoint_id is not None:
            endpoints_store.disable_endpoint(tx, a.delivery.endpoint_id, now=a.at, reason="gone")
