"""Webhook endpoints (secrets shown once, rotated with overlap), deliveries and the events feed."""

from __future__ import annotations

import json
from typing import Any

from bridge.clock import rfc3339
from bridge.core import codec
from bridge.core.signing import new_secret
from bridge.errors import BadRequest, Conflict, NotFound
from bridge.ids import new_id, random_bytes
from bridge.services.context import Context
from bridge.store import compat as compat_store
from bridge.store import deliveries as deliveries_store
from bridge.store import endpoints as store
from bridge.store import events as events_store
from bridge.store.database import Row, Tx

__all__ = [
    "ROTATION_OVERLAP_MS",
    "create_endpoint",
    "delete_endpoint",
    "deliveries_of_event",
    "get_delivery",
    "get_endpoint",
    "list_deliveries",
    "list_endpoints",
    "list_events",
    "retry_delivery",
    "rotate_secret",
    "send_test_event",
]

TEST_EVENT = "webhook.test"  # sent to one endpoint on request; not one of the subscribable EVENT_TYPES

ROTATION_OVERLAP_MS = 24 * 3600 * 1000


def endpoint_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "url": row["url"],
        "event_types": json.loads(row["event_types"]),
        "created_at": rfc3339(row["created_at"]),
        "disabled": row["disabled_at"] is not None,
        "disabled_at": rfc3339(row["disabled_at"]),
        "disabled_reason": row["disabled_reason"],
    }


def delivery_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "endpoint_id": row["endpoint_id"],
        "url": row["url"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": rfc3339(row["next_attempt_at"]) if row["status"] == "pending" else None,
        "last_status_code": row["last_status_code"],
        "last_error": row["last_error"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
        "succeeded_at": rfc3339(row["succeeded_at"]),
    }


async def create_endpoint(ctx: Context, merchant_id: str, url: str, event_types: list[str]) -> dict[str, Any]:
    secret = new_secret(random_bytes(24))
    endpoint_id = new_id("whe")

    def op(tx: Tx) -> dict[str, Any]:
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
        row = store.get_endpoint(tx, merchant_id, endpoint_id)
        assert row is not None
        return {**endpoint_json(row), "secret": secret}

    return await ctx.db.write(op)


async def list_endpoints(ctx: Context, merchant_id: str) -> list[dict[str, Any]]:
    def op(tx: Tx) -> list[dict[str, Any]]:
        return [endpoint_json(r) for r in store.list_endpoints(tx, merchant_id)]

    return await ctx.db.read(op)


async def get_endpoint(ctx: Context, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_endpoint(tx, merchant_id, endpoint_id)
        if row is None:
            raise NotFound("no such webhook endpoint")
        return endpoint_json(row)

    return await ctx.db.read(op)


async def delete_endpoint(ctx: Context, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = store.get_endpoint(tx, merchant_id, endpoint_id)
        if row is None:
            raise NotFound("no such webhook endpoint")
        store.soft_delete_endpoint(tx, endpoint_id, now=ctx.clock.now_ms())
        return {**endpoint_json(row), "deleted": True}

    return await ctx.db.write(op)


async def rotate_secret(ctx: Context, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    secret = new_secret(random_bytes(24))

    def op(tx: Tx) -> dict[str, Any]:
        now = ctx.clock.now_ms()
        if store.get_endpoint(tx, merchant_id, endpoint_id) is None:
            raise NotFound("no such webhook endpoint")
        store.rotate_secret(tx, endpoint_id, new_secret=secret, old_valid_until=now + ROTATION_OVERLAP_MS)
        return {"id": endpoint_id, "secret": secret, "previous_secret_valid_until": rfc3339(now + ROTATION_OVERLAP_MS)}

    return await ctx.db.write(op)


async def list_deliveries(
    ctx: Context, merchant_id: str, *, status: str | None, event_id: str | None, before: str | None, limit: int
) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        rows = deliveries_store.list_deliveries(
            tx, merchant_id, status=status, event_id=event_id, before=before, limit=limit + 1
        )
        return {"data": [delivery_json(r) for r in rows[:limit]], "has_more": len(rows) > limit}

    return await ctx.db.read(op)


def _delivery_with_attempts(tx: Tx, merchant_id: str, delivery_id: str) -> dict[str, Any]:
    row = deliveries_store.get_delivery(tx, merchant_id, delivery_id)
    if row is None:
        raise NotFound("no such delivery")
    out = delivery_json(row)
    out["attempt_log"] = [
        {
            "attempt": a["attempt"],
            "at": rfc3339(a["at"]),
            "status_code": a["status_code"],
            "error": a["error"],
            "duration_ms": a["duration_ms"],
        }
        for a in deliveries_store.list_attempts(tx, delivery_id)
    ]
    return out


def deliveries_of_event(tx: Tx, merchant_id: str, event_id: str) -> list[dict[str, Any]]:
    """Every delivery of one event, each with its attempt log (for timelines, inside the caller's read)."""
    rows = deliveries_store.list_deliveries(tx, merchant_id, status=None, event_id=event_id, before=None, limit=100)
    return [_delivery_with_attempts(tx, merchant_id, r["id"]) for r in reversed(rows)]


async def get_delivery(ctx: Context, merchant_id: str, delivery_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        return _delivery_with_attempts(tx, merchant_id, delivery_id)

    return await ctx.db.read(op)


async def retry_delivery(ctx: Context, merchant_id: str, delivery_id: str) -> dict[str, Any]:
    def op(tx: Tx) -> dict[str, Any]:
        row = deliveries_store.get_delivery(tx, merchant_id, delivery_id)
        if row is None:
            raise NotFound("no such delivery")
        if row["status"] == "pending":
            raise Conflict("this delivery is already waiting for its next attempt", "delivery_pending")
        if row["status"] == "succeeded" and compat_store.is_compat_delivery(tx, delivery_id):
            # A shop that acknowledged a notify answers a second one with an error (dujiaoka: HTTP 500).
            raise Conflict("this shop notify was acknowledged; it is never sent again", "notify_acknowledged")
        if row["endpoint_id"] is not None:
            endpoint = store.get_endpoint(tx, merchant_id, row["endpoint_id"])
            if endpoint is None:
                raise Conflict("the endpoint of this delivery was deleted", "endpoint_deleted")
            if endpoint["disabled_at"] is not None:
                raise Conflict("the endpoint of this delivery is disabled (it answered 410 Gone)", "endpoint_disabled")
        deliveries_store.reset_for_retry(tx, delivery_id, now=ctx.clock.now_ms())
        tx.after_commit.append(ctx.bus.deliveries.set)
        return _delivery_with_attempts(tx, merchant_id, delivery_id)

    return await ctx.db.write(op)


async def list_events(ctx: Context, merchant_id: str, *, after: str | None, limit: int) -> tuple[list[Row], bool]:
    """(rows of seq, id, body after the given event id, has_more)."""

    def op(tx: Tx) -> tuple[list[Row], bool]:
        after_seq = 0
        if after:
            seq = events_store.event_seq(tx, merchant_id, after)
            if seq is None:
                raise BadRequest(f"unknown event id in after / Last-Event-ID: {after[:64]}", "unknown_event")
            after_seq = seq
        rows = events_store.list_events(tx, merchant_id, after_seq=after_seq, limit=limit + 1)
        return rows[:limit], len(rows) > limit

    return await ctx.db.read(op)


async def send_test_event(ctx: Context, merchant_id: str, endpoint_id: str) -> dict[str, Any]:
    """A `webhook.test` event delivered to this one endpoint (signed and retried like any other)."""

    def op(tx: Tx) -> dict[str, Any]:
        ep = store.get_endpoint(tx, merchant_id, endpoint_id)
        if ep is None:
            raise NotFound("no such webhook endpoint")
        if ep["disabled_at"] is not None:
            raise Conflict("this endpoint is disabled (it answered 410 Gone)", "endpoint_disabled")
        now = ctx.clock.now_ms()
        event_id, delivery_id = new_id("evt"), new_id("dlv")
        data = {"endpoint_id": endpoint_id, "message": "a test event sent from the dashboard"}
        body = codec.dumps({"id": event_id, "type": TEST_EVENT, "timestamp": rfc3339(now), "data": data})
        events_store.insert_event(
            tx,
            event_id=event_id,
            merchant_id=merchant_id,
            type=TEST_EVENT,
            body=body,
            now=now,
            targets=[(delivery_id, endpoint_id, str(ep["url"]))],
            claim=(claim := ctx.bus.claim(now)),
        )
        fresh = {  # the shape of bridge.store.deliveries.due_deliveries rows, as emit() hands them over
            "id": delivery_id,
            "event_id": event_id,
            "merchant_id": merchant_id,
            "endpoint_id": endpoint_id,
            "url": ep["url"],
            "attempts": 0,
            "body": body,
            "event_type": TEST_EVENT,
            "lease_until": None if claim is None else claim[1],
            "secret": ep["secret"],
            "old_secret": ep["old_secret"],
            "old_secret_expires_at": ep["old_secret_expires_at"],
            "webhook_secret": None,
        }
        tx.after_commit.append(lambda: ctx.bus.announce(merchant_id, [fresh]))
        return {"event_id": event_id, "delivery_id": delivery_id}

    return await ctx.db.write(op)
