"""Webhook endpoints (secrets shown once, rotated with overlap), deliveries and the events feed.

These functions return records (`Endpoint`, `Delivery`, the small results below); bridge.web
renders them as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.clock import rfc3339
from bridge.core import codec
from bridge.core.models.delivery import Delivery, DeliveryDetail, Outgoing
from bridge.core.models.endpoint import Endpoint
from bridge.core.models.ids import DeliveryId, EndpointId, EventId, MerchantId
from bridge.core.signing import new_secret
from bridge.core.states import DeliveryStatus
from bridge.errors import Conflict, NotFound
from bridge.ids import new_id, random_bytes
from bridge.services.bus import EVENTS, Message
from bridge.services.context import Context
from bridge.store import compat as compat_store
from bridge.store import deliveries as deliveries_store
from bridge.store import endpoints as store
from bridge.store import events as events_store
from bridge.store.database import Tx

__all__ = [
    "ROTATION_OVERLAP_MS",
    "CreatedEndpoint",
    "DeliveryDetail",
    "DeliveryPage",
    "RotatedSecret",
    "TestSent",
    "create_endpoint",
    "delete_endpoint",
    "deliveries_of_event",
    "get_delivery",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "retry_delivery",
    "rotate_secret",
    "send_test_event",
]

TEST_EVENT = "webhook.test"  # sent to one endpoint on request; not one of the subscribable EVENT_TYPES

ROTATION_OVERLAP_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class CreatedEndpoint:
    endpoint: Endpoint
    secret: str  # shown this once


@dataclass(frozen=True, slots=True)
class RotatedSecret:
    endpoint_id: EndpointId
    secret: str  # shown this once
    previous_valid_until: int  # Unix ms: the previous secret still signs until then


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    data: list[Delivery]
    has_more: bool


@dataclass(frozen=True, slots=True)
class TestSent:
    event_id: EventId
    delivery_id: DeliveryId


async def create_endpoint(ctx: Context, merchant_id: str, url: str, event_types: list[str]) -> CreatedEndpoint:
    secret = new_secret(random_bytes(24))
    endpoint_id = new_id("whe")

    def op(tx: Tx) -> CreatedEndpoint:
        cap = ctx.settings.max_webhook_endpoints
        if store.count_endpoints(tx, merchant_id) >= cap:  # every event fans out to each one
            raise Conflict(f"at most {cap} webhook endpoints per merchant; delete one first", "too_many_endpoints")
        store.insert_endpoint(
            tx,
            id=endpoint_id,
            merchant_id=merchant_id,
            url=url,
            event_types=event_types,
            secret=secret,
            now=ctx.clock.now_ms(),
        )
        endpoint = store.get_endpoint(tx, merchant_id, endpoint_id)
        assert endpoint is not None
        return CreatedEndpoint(endpoint, secret)

    return await ctx.db.write(op)


async def list_endpoints(ctx: Context, merchant_id: str) -> list[Endpoint]:
    return await ctx.db.read(lambda tx: store.list_endpoints(tx, merchant_id))


async def get_endpoint(ctx: Context, merchant_id: str, endpoint_id: str) -> Endpoint:
    def op(tx: Tx) -> Endpoint:
        endpoint = store.get_endpoint(tx, merchant_id, endpoint_id)
        if endpoint is None:
            raise NotFound("no such webhook endpoint")
        return endpoint

    return await ctx.db.read(op)


async def delete_endpoint(ctx: Context, merchant_id: str, endpoint_id: str) -> Endpoint:
    """Delete an endpoint; returns it as it was."""

    def op(tx: Tx) -> Endpoint:
        endpoint = store.get_endpoint(tx, merchant_id, endpoint_id)
        if endpoint is None:
            raise NotFound("no such webhook endpoint")
        store.soft_delete_endpoint(tx, endpoint_id, now=ctx.clock.now_ms())
        return endpoint

    return await ctx.db.write(op)


async def rotate_secret(ctx: Context, merchant_id: str, endpoint_id: str) -> RotatedSecret:
    secret = new_secret(random_bytes(24))

    def op(tx: Tx) -> RotatedSecret:
        now = ctx.clock.now_ms()
        if store.get_endpoint(tx, merchant_id, endpoint_id) is None:
            raise NotFound("no such webhook endpoint")
        store.rotate_secret(tx, endpoint_id, new_secret=secret, old_valid_until=now + ROTATION_OVERLAP_MS)
        return RotatedSecret(EndpointId(endpoint_id), secret, now + ROTATION_OVERLAP_MS)

    return await ctx.db.write(op)


async def list_deliveries(
    ctx: Context,
    merchant_id: str,
    *,
    status: DeliveryStatus | str | None,
    event_id: str | None,
    before: str | None,
    limit: int,
) -> DeliveryPage:
    wanted = None if status is None else DeliveryStatus(status)

    def op(tx: Tx) -> DeliveryPage:
        rows = deliveries_store.list_deliveries(
            tx, merchant_id, status=wanted, event_id=event_id, before=before, limit=limit + 1
        )
        return DeliveryPage(rows[:limit], len(rows) > limit)

    return await ctx.db.read(op)


def _detail(tx: Tx, merchant_id: str, delivery_id: str) -> DeliveryDetail:
    delivery = deliveries_store.get_delivery(tx, merchant_id, delivery_id)
    if delivery is None:
        raise NotFound("no such delivery")
    return DeliveryDetail(delivery, tuple(deliveries_store.list_attempts(tx, delivery_id)))


def deliveries_of_event(tx: Tx, merchant_id: str, event_id: str) -> tuple[DeliveryDetail, ...]:
    """Every delivery of one event, oldest first, each with its attempt log (for an order's timeline,
    inside the caller's read)."""
    rows = deliveries_store.list_deliveries(tx, merchant_id, status=None, event_id=event_id, before=None, limit=100)
    return tuple(_detail(tx, merchant_id, d.id) for d in reversed(rows))


async def get_delivery(ctx: Context, merchant_id: str, delivery_id: str) -> DeliveryDetail:
    return await ctx.db.read(lambda tx: _detail(tx, merchant_id, delivery_id))


async def retry_delivery(ctx: Context, merchant_id: str, delivery_id: str) -> DeliveryDetail:
    def op(tx: Tx) -> DeliveryDetail:
        delivery = deliveries_store.get_delivery(tx, merchant_id, delivery_id)
        if delivery is None:
            raise NotFound("no such delivery")
        if delivery.status is DeliveryStatus.PENDING:
            raise Conflict("this delivery is already waiting for its next attempt", "delivery_pending")
        if delivery.status is DeliveryStatus.SUCCEEDED and compat_store.is_compat_delivery(tx, delivery_id):
            # A shop that acknowledged a notify answers a second one with an error (dujiaoka: HTTP 500).
            raise Conflict("this shop notify was acknowledged; it is never sent again", "notify_acknowledged")
        if delivery.endpoint_id is not None:
            endpoint = store.get_endpoint(tx, merchant_id, delivery.endpoint_id)
            if endpoint is None:
                raise Conflict("the endpoint of this delivery was deleted", "endpoint_deleted")
            if endpoint.disabled:
                raise Conflict("the endpoint of this delivery is disabled (it answered 410 Gone)", "endpoint_disabled")
        if not deliveries_store.reset_for_retry(tx, delivery_id, now=ctx.clock.now_ms()):
            raise Conflict("this delivery is already waiting for its next attempt", "delivery_pending")
        tx.after_commit.append(ctx.bus.deliveries.set)
        return _detail(tx, merchant_id, delivery_id)

    return await ctx.db.write(op)


async def send_test_event(ctx: Context, merchant_id: str, endpoint_id: str) -> TestSent:
    """A `webhook.test` event delivered to this one endpoint (signed and retried like any other)."""

    def op(tx: Tx) -> TestSent:
        ep = store.get_endpoint(tx, merchant_id, endpoint_id)
        keys = store.endpoint_keys(tx, endpoint_id)
        if ep is None or keys is None:
            raise NotFound("no such webhook endpoint")
        if ep.disabled:
            raise Conflict("this endpoint is disabled (it answered 410 Gone)", "endpoint_disabled")
        now = ctx.clock.now_ms()
        event_id, delivery_id = EventId(new_id("evt")), DeliveryId(new_id("dlv"))
        data = {"endpoint_id": endpoint_id, "message": "a test event sent from the dashboard"}
        body = codec.dumps({"id": event_id, "type": TEST_EVENT, "timestamp": rfc3339(now), "data": data})
        events_store.insert_event(
            tx,
            event_id=event_id,
            merchant_id=merchant_id,
            type=TEST_EVENT,
            body=body,
            now=now,
            targets=[(delivery_id, endpoint_id, ep.url)],
            claim=(claim := ctx.bus.claim(now)),
        )
        fresh = Outgoing(  # handed to the worker as bridge.services.events.emit does
            id=delivery_id,
            event_id=event_id,
            event_type=TEST_EVENT,
            merchant_id=MerchantId(merchant_id),
            endpoint_id=EndpointId(endpoint_id),
            url=ep.url,
            attempts=0,
            body=body,
            lease_until=None if claim is None else claim[1],
            secret=keys.secret,
            old_secret=keys.old_secret,
            old_secret_expires_at=keys.old_secret_expires_at,
        )
        tx.after_commit.append(lambda: ctx.bus.announce(merchant_id, [fresh]))
        ctx.bus.broadcast.publish(tx, Message(EVENTS, merchant_id), local=False)  # streams on other instances
        return TestSent(event_id, delivery_id)

    return await ctx.db.write(op)
