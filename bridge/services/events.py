"""Raising events: stored with their webhook deliveries in the caller's transaction, announced after commit."""

from __future__ import annotations

import asyncio
import collections
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bridge.clock import rfc3339
from bridge.core import codec
from bridge.core.models.delivery import Outgoing
from bridge.core.models.endpoint import Subscribers
from bridge.core.models.event import Event, Position
from bridge.core.models.ids import DeliveryId, EndpointId, EventId, MerchantId
from bridge.errors import BadRequest
from bridge.ids import new_id
from bridge.services.bus import EVENTS, Broadcast, Message
from bridge.store import events as store
from bridge.store.database import Database, Tx

__all__ = ["ALL", "EVENT_TYPES", "EventBus", "Page", "emit", "list_events"]

SETTLE_FIRST_S = 0.005  # the first look again at held-back events (then doubling, at most 0.2 s)

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
    """Wake-ups after commit: the delivery worker and SSE streams wait on it.

    `broadcast` carries them to the other instances on the same database (`EVENTS` messages wake
    their streams of that merchant; a listener's gap wakes every stream)."""

    def __init__(self, instance: str | None = None) -> None:
        # This process's id among the instances on one database (messages, device holders).
        self.broadcast = Broadcast(instance or new_id("inst"))
        self.broadcast.on(EVENTS, lambda msg: self.announce(msg.key, []))
        self.broadcast.on_gap(self.wake_all)
        self.deliveries = asyncio.Event()  # "look in the database": retries due, room freed, manual retry
        # Deliveries just committed, with everything needed to sign and send them: the worker takes
        # them from here without reading them back (the database stays the truth: whatever the
        # worker cannot take now, its next poll finds).
        self.fresh: collections.deque[Outgoing] = collections.deque(maxlen=100_000)
        self.fresh_ready = asyncio.Event()
        # (instance id, lease ms) while a delivery worker in this process takes `fresh`: the
        # deliveries start claimed by it. None: they start unclaimed, for any instance's poll.
        self.claimant: tuple[str, int] | None = None
        self.closed = False
        self._streams: dict[str, set[asyncio.Event]] = defaultdict(set)

    @property
    def instance(self) -> str:
        return self.broadcast.instance

    def close(self) -> None:
        """The app is shutting down: wake every stream so it can end."""
        self.closed = True
        self.wake_all()

    def wake_all(self) -> None:
        """Every stream looks in the database again."""
        for events in self._streams.values():
            for ev in events:
                ev.set()

    def announce(self, merchant_id: str, deliveries: list[Outgoing]) -> None:
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
    subscribers: Subscribers | None = None,
) -> str:
    """Store an event and a delivery for each subscribed endpoint (and the order's notify_url).

    `subscribers` may pass the merchant's when the caller already has them (several events in one
    transaction)."""
    assert type in EVENT_TYPES, type
    event_id = new_id("evt")
    body = codec.dumps({"id": event_id, "type": type, "timestamp": rfc3339(now), "data": data})
    if subscribers is None:
        subscribers = store.subscribers(tx, merchant_id)
    claim = bus.claim(now)

    def outgoing(endpoint_id: str | None, url: str, **secrets: Any) -> Outgoing:
        return Outgoing(
            id=DeliveryId(new_id("dlv")),
            event_id=EventId(event_id),
            event_type=type,
            merchant_id=MerchantId(merchant_id),
            endpoint_id=None if endpoint_id is None else EndpointId(endpoint_id),
            url=url,
            attempts=0,
            body=body,
            lease_until=None if claim is None else claim[1],
            **secrets,
        )

    # What the worker sends at once (the same record a claim from the database returns).
    fresh = [
        outgoing(
            ep.id,
            ep.url,
            secret=ep.keys.secret,
            old_secret=ep.keys.old_secret,
            old_secret_expires_at=ep.keys.old_secret_expires_at,
        )
        for ep in subscribers.endpoints
        if ep.wants(type)
    ]
    if notify_url and type.startswith("order."):
        fresh.append(outgoing(None, notify_url, webhook_secret=subscribers.webhook_secret))
    targets = [(d.id, d.endpoint_id, d.url) for d in fresh]
    store.insert_event(
        tx, event_id=event_id, merchant_id=merchant_id, type=type, body=body, now=now, targets=targets, claim=claim
    )
    tx.after_commit.append(lambda: bus.announce(merchant_id, fresh))
    bus.broadcast.publish(tx, Message(EVENTS, merchant_id), local=False)  # the announce above is ours
    return event_id


@dataclass(frozen=True, slots=True)
class Page:
    events: list[Event]
    has_more: bool  # more settled events follow: ask again at once
    unsettled: bool = False  # committed events follow that an older transaction holds back: ask again soon


async def list_events(
    db: Database, merchant_id: str, *, after: str | Position | None, limit: int, settle_s: float = 0.0
) -> Page:
    """The merchant's events after `after` in commit order. `after` is an event id (a client's
    cursor, `Last-Event-ID`: BadRequest if it is not one of this merchant's events) or a position
    already looked up.

    Committed events that an older transaction still holds back (`Page.unsettled`) are waited for
    up to `settle_s` (normally they settle within milliseconds), so that a client listing the feed
    right after a change sees its event; after that the page says `unsettled`."""

    def op(tx: Tx) -> Page:
        position: Position = (0, 0)
        if isinstance(after, str):
            found = store.event_position(tx, merchant_id, after)
            if found is None:
                raise BadRequest(f"unknown event id in after / Last-Event-ID: {after[:64]}", "unknown_event")
            position = found
        elif after is not None:
            position = after
        events = store.events_after(tx, merchant_id, after=position, limit=limit + 1)
        if len(events) > limit:
            return Page(events[:limit], True)
        last = events[-1].position if events else position
        return Page(events, False, store.events_unsettled(tx, merchant_id, after=last))

    page = await db.read(op)
    waited, pause = 0.0, SETTLE_FIRST_S
    while page.unsettled and waited < settle_s:
        await asyncio.sleep(pause)
        waited, pause = waited + pause, min(pause * 2, 0.2)
        page = await db.read(op)
    return page
