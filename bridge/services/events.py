"""Raising events: stored with their webhook deliveries in the caller's transaction, announced after commit."""

from __future__ import annotations

import asyncio
import collections
from collections import defaultdict
from typing import Any

from bridge.clock import rfc3339
from bridge.core import codec
from bridge.ids import new_id
from bridge.store import events as store
from bridge.store.database import Tx

__all__ = ["ALL", "EVENT_TYPES", "EventBus", "emit"]

EVENT_TYPES = (
    "order.paid",
    "order.expired",
    "order.closed",
    "payment.received",
    "payment.unmatched",
    "device.online",
    "device.offline",
    "device.degraded",
)
ALL = "*"  # subscribe to every merchant's wake-ups (the admin's dashboard); merchant ids never look like this


class EventBus:
    """In-process wake-ups after commit: the delivery worker and SSE streams wait on it."""

    def __init__(self) -> None:
        self.deliveries = asyncio.Event()  # "look in the database": retries due, room freed, manual retry
        # Deliveries just committed, with everything needed to sign and send them: the worker takes
        # them from here without reading them back (the database stays the truth: whatever the
        # worker cannot take now, its next poll finds).
        self.fresh: collections.deque[dict[str, Any]] = collections.deque(maxlen=100_000)
        self.fresh_ready = asyncio.Event()
        # (instance id, lease ms) while a delivery worker in this process takes `fresh`: the
        # deliveries start claimed by it. None: they start unclaimed, for any instance's poll.
        self.claimant: tuple[str, int] | None = None
        self.closed = False
        self._streams: dict[str, set[asyncio.Event]] = defaultdict(set)

    def close(self) -> None:
        """The app is shutting down: wake every stream so it can end."""
        self.closed = True
        for events in self._streams.values():
            for ev in events:
                ev.set()

    def announce(self, merchant_id: str, deliveries: list[dict[str, Any]]) -> None:
        if deliveries:
            self.fresh.extend(deliveries)
            self.fresh_ready.set()
        for ev in self._streams.get(merchant_id, ()):
            ev.set()
        for ev in self._streams.get(ALL, ()):
            ev.set()

    def claim(self, now: int) -> tuple[str, int] | None:
        """The claim fresh deliveries committed at `now` start with (see `claimant`)."""
        return None if self.claimant is None else (self.claimant[0], now + self.claimant[1])

    def streams(self, merchant_id: str) -> int:
        """How many live streams this merchant holds in this process."""
        return len(self._streams.get(merchant_id, ()))

    def subscribe(self, merchant_id: str) -> asyncio.Event:
        """An event set after each commit that raised events of this merchant (`ALL`: of any merchant)."""
        ev = asyncio.Event()
        self._streams[merchant_id].add(ev)
        return ev

    def unsubscribe(self, merchant_id: str, ev: asyncio.Event) -> None:
        self._streams[merchant_id].discard(ev)
        if not self._streams[merchant_id]:
            del self._streams[merchant_id]


def emit(
    tx: Tx,
    bus: EventBus,
    *,
    merchant_id: str,
    type: str,
    data: dict[str, Any],
    now: int,
    notify_url: str | None = None,
    subscribers: store.Subscribers | None = None,
) -> str:
    """Store an event and a delivery for each subscribed endpoint (and the order's notify_url).

    `subscribers` may pass the merchant's when the caller already has them (several events in one
    transaction)."""
    assert type in EVENT_TYPES, type
    event_id = new_id("evt")
    body = codec.dumps({"id": event_id, "type": type, "timestamp": rfc3339(now), "data": data})
    targets: list[tuple[str, str | None, str]] = []
    sendable: list[dict[str, Any]] = []
    if subscribers is None:
        subscribers = store.subscribers(tx, merchant_id)
    for ep in subscribers.endpoints:
        types = store.event_types_of(ep)
        if not types or type in types:
            targets.append((new_id("dlv"), str(ep["id"]), str(ep["url"])))
            sendable.append(
                {
                    "secret": ep["secret"],
                    "old_secret": ep["old_secret"],
                    "old_secret_expires_at": ep["old_secret_expires_at"],
                    "webhook_secret": None,
                }
            )
    if notify_url and type.startswith("order."):
        targets.append((new_id("dlv"), None, notify_url))
        sendable.append(
            {
                "secret": None,
                "old_secret": None,
                "old_secret_expires_at": None,
                "webhook_secret": subscribers.webhook_secret,
            }
        )
    claim = bus.claim(now)
    store.insert_event(
        tx, event_id=event_id, merchant_id=merchant_id, type=type, body=body, now=now, targets=targets, claim=claim
    )
    # The same shape as bridge.store.deliveries.due_deliveries rows.
    fresh = [
        {
            "id": d,
            "event_id": event_id,
            "merchant_id": merchant_id,
            "endpoint_id": ep,
            "url": url,
            "attempts": 0,
            "body": body,
            "event_type": type,
            "lease_until": None if claim is None else claim[1],
            **secrets,
        }
        for (d, ep, url), secrets in zip(targets, sendable, strict=True)
    ]
    tx.after_commit.append(lambda: bus.announce(merchant_id, fresh))
    return event_id
