"""Raising events: stored with their webhook deliveries in the caller's transaction, announced after commit."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

from bridge.clock import rfc3339
from bridge.ids import new_id
from bridge.store import events as store
from bridge.store.database import Row, Tx

__all__ = ["EVENT_TYPES", "EventBus", "emit"]

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


class EventBus:
    """In-process wake-ups after commit: the delivery worker and SSE streams wait on it."""

    def __init__(self) -> None:
        self.deliveries = asyncio.Event()
        self.closed = False
        self._streams: dict[str, set[asyncio.Event]] = defaultdict(set)

    def close(self) -> None:
        """The app is shutting down: wake every stream so it can end."""
        self.closed = True
        for events in self._streams.values():
            for ev in events:
                ev.set()

    def announce(self, merchant_id: str, with_deliveries: bool) -> None:
        if with_deliveries:
            self.deliveries.set()
        for ev in self._streams.get(merchant_id, ()):
            ev.set()

    def subscribe(self, merchant_id: str) -> asyncio.Event:
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
    endpoints: list[Row] | None = None,
) -> str:
    """Store an event and a delivery for each subscribed endpoint (and the order's notify_url).

    `endpoints` may pass the merchant's subscribed endpoints when the caller already has them
    (several events in one transaction)."""
    assert type in EVENT_TYPES, type
    event_id = new_id("evt")
    body = json.dumps(
        {"id": event_id, "type": type, "timestamp": rfc3339(now), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    )
    targets: list[tuple[str, str | None, str]] = []
    if endpoints is None:
        endpoints = store.subscribed_endpoints(tx, merchant_id)
    for ep in endpoints:
        types = store.event_types_of(ep)
        if not types or type in types:
            targets.append((new_id("dlv"), str(ep["id"]), str(ep["url"])))
    if notify_url and type.startswith("order."):
        targets.append((new_id("dlv"), None, notify_url))
    store.insert_event(
        tx, event_id=event_id, merchant_id=merchant_id, type=type, body=body, now=now, targets=targets
    )
    has_targets = bool(targets)
    tx.after_commit.append(lambda: bus.announce(merchant_id, has_targets))
    return event_id
