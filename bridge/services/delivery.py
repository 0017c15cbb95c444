"""The webhook delivery worker: signs and sends due deliveries, records outcomes, schedules retries.

At-least-once: an outcome is recorded after the HTTP exchange; a crash between a receiver's 2xx
and the recording means the delivery is sent again, with the same `webhook-id`. Receivers dedupe.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

import structlog

from bridge.core.backoff import RetryPolicy, delay_for
from bridge.core.signing import signature_header
from bridge.services.context import Context
from bridge.store import deliveries as store
from bridge.store import endpoints as endpoints_store
from bridge.store.database import Row, Tx
from bridge.transport import TransportResult, WebhookTransport

__all__ = ["DeliveryWorker", "Outcome", "classify", "live_secrets"]

log = structlog.get_logger("bridge.webhooks")
PER_TARGET = 4  # deliveries in flight to one host at most: a slow endpoint cannot starve the others


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # the delivery's new status
    metric: str  # success, http_error, timeout, network_error, gone, forbidden_target
    next_in: float | None  # seconds to the next attempt when still pending
    disable_endpoint: bool = False


def classify(result: TransportResult, *, attempt: int, policy: RetryPolicy, rng: random.Random) -> Outcome:
    """What one attempt's result means for the delivery (pure)."""
    if result.status is not None and 200 <= result.status < 300:
        return Outcome("succeeded", "success", None)
    if result.status == 410:
        return Outcome("disabled", "gone", None, disable_endpoint=True)
    if result.error and result.error.startswith("forbidden_target"):
        return Outcome("failed", "forbidden_target", None)  # a configuration problem: retrying cannot help
    metric = (
        "http_error" if result.status is not None else ("timeout" if result.error == "timeout" else "network_error")
    )
    wait = delay_for(attempt + 1, policy, rng, result.retry_after)
    if wait is None:
        return Outcome("failed", metric, None)
    return Outcome("pending", metric, wait)


def live_secrets(row: Row, now: int) -> list[str]:
    """The secrets to sign with: the endpoint's (plus its previous one during rotation), or the
    merchant's default secret for an order's notify_url."""
    if row["endpoint_id"] is None:
        return [str(row["webhook_secret"])]
    out = [str(row["secret"])]
    if row["old_secret"] and row["old_secret_expires_at"] and row["old_secret_expires_at"] > now:
        out.append(str(row["old_secret"]))
    return out


class DeliveryWorker:
    def __init__(self, ctx: Context, transport: WebhookTransport, rng: random.Random | None = None) -> None:
        self.ctx = ctx
        self.transport = transport
        self.rng = rng or random.Random()
        self.policy = RetryPolicy(schedule=ctx.settings.schedule())
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._global = asyncio.Semaphore(ctx.settings.webhook_concurrency)
        self._per_target: defaultdict[str, asyncio.Semaphore] = defaultdict(lambda: asyncio.Semaphore(PER_TARGET))

    async def run(self) -> None:
        bus = self.ctx.bus
        try:
            while True:
                bus.deliveries.clear()
                now = self.ctx.clock.now_ms()
                exclude = set(self._in_flight)

                def load(tx: Tx, now: int = now, exclude: set[str] = exclude) -> tuple[list[Row], int | None]:
                    return store.due_deliveries(tx, now=now, limit=500, exclude=exclude), store.next_due_at(tx)

                try:
                    due, next_at = await self.ctx.db.read(load)
                except Exception as e:  # the database may be busy: try again shortly
                    log.warning("webhook.load_failed", error=repr(e))
                    due, next_at = [], None
                for row in due:
                    self._in_flight.add(row["id"])
                    task = asyncio.create_task(self._deliver(row), name="webhook-delivery")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                wait = 1.0
                if next_at is not None and not due:
                    wait = min(1.0, max(0.0, (next_at - self.ctx.clock.now_ms()) / 1000))
                if due and len(due) == 500:
                    wait = 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(bus.deliveries.wait(), wait)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _deliver(self, row: Row) -> None:
        target = urlsplit(row["url"]).netloc
        try:
            async with self._per_target[target], self._global:
                result = await self._send(row)
            outcome = classify(result, attempt=row["attempts"] + 1, policy=self.policy, rng=self.rng)
            # Record even if we are being cancelled now: the attempt happened.
            await asyncio.shield(self._record(row, result, outcome))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.error("webhook.delivery_crashed", delivery_id=row["id"], error=repr(e))
        finally:
            self._in_flight.discard(row["id"])

    async def _send(self, row: Row) -> TransportResult:
        now = self.ctx.clock.now_ms()
        timestamp = now // 1000
        body = str(row["body"]).encode()
        headers = {
            "webhook-id": str(row["event_id"]),
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(live_secrets(row, now), str(row["event_id"]), timestamp, body),
        }
        result = await self.transport.send(str(row["url"]), headers, body, self.ctx.settings.webhook_timeout)
        self.ctx.metrics.webhook_seconds.observe(result.elapsed_ms / 1000)
        return result

    async def _record(self, row: Row, result: TransportResult, outcome: Outcome) -> None:
        now = self.ctx.clock.now_ms()
        attempt = row["attempts"] + 1
        next_at = None if outcome.next_in is None else now + int(outcome.next_in * 1000)
        error = result.error or (None if outcome.status == "succeeded" else f"HTTP {result.status}")

        def op(tx: Tx) -> None:
            store.record_attempt(
                tx,
                row["id"],
                attempt=attempt,
                now=now,
                status=outcome.status,
                status_code=result.status,
                error=error,
                duration_ms=int(result.elapsed_ms),
                next_attempt_at=next_at,
            )
            if outcome.disable_endpoint and row["endpoint_id"] is not None:
                endpoints_store.disable_endpoint(tx, row["endpoint_id"], now=now, reason="gone")

        await self.ctx.db.write(op)
        if outcome.status == "pending":
            self.ctx.bus.deliveries.set()  # let the loop re-plan its wait around the new due time
        self.ctx.metrics.webhook_attempts.labels(outcome.metric).inc()
        log.info(
            "webhook." + ("delivered" if outcome.status == "succeeded" else "attempt_failed"),
            delivery_id=row["id"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            attempt=attempt,
            status_code=result.status,
            error=result.error,
            next_status=outcome.status,
            wait_s=outcome.next_in,
        )
