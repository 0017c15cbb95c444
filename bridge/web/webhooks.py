"""Webhook endpoints, the delivery log with manual redelivery, and the delivery worker's lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web

from bridge.clock import rfc3339
from bridge.core.models.delivery import Delivery, DeliveryAttempt
from bridge.core.models.endpoint import Endpoint
from bridge.core.ssrf import check_target
from bridge.core.states import DeliveryStatus
from bridge.errors import BadRequest
from bridge.sender import SenderProcess
from bridge.services import endpoints as service
from bridge.services.context import Context
from bridge.services.delivery import DeliveryWorker
from bridge.services.events import EVENT_TYPES
from bridge.transport import AiohttpTransport, WebhookTransport
from bridge.web.auth import merchant_route
from bridge.web.keys import CTX
from bridge.web.tasks import spawn, stop
from bridge.web.validation import Body, check_url, query_choice, query_int, read_json

__all__ = [
    "DELIVERY_STATUSES",
    "TRANSPORT",
    "add_routes",
    "delivery_detail_json",
    "delivery_json",
    "delivery_worker_ctx",
    "endpoint_json",
    "endpoint_url",
]

log = structlog.get_logger("bridge.webhooks")

DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)
# Set before the app starts to send webhooks through another transport (tests, a proxy).
TRANSPORT = web.AppKey[WebhookTransport]("webhook_transport")


def endpoint_url(ctx: Context, value: str) -> str:
    """A webhook endpoint's URL, checked: absolute http(s), and not a private address unless allowed."""
    url = check_url(value)
    refused = check_target(url, [], allow_private=ctx.settings.allow_private_webhooks)
    if refused:
        raise BadRequest(
            f"webhooks to loopback, private or metadata addresses are refused ({refused}); "
            "set PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS=1 for a local setup",
            "forbidden_webhook_target",
        )
    return url


def endpoint_json(e: Endpoint) -> dict[str, Any]:
    return {
        "id": e.id,
        "url": e.url,
        "event_types": list(e.event_types),
        "created_at": rfc3339(e.created_at),
        "disabled": e.disabled,
        "disabled_at": rfc3339(e.disabled_at),
        "disabled_reason": e.disabled_reason,
    }


def delivery_json(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "endpoint_id": d.endpoint_id,
        "url": d.url,
        "status": d.status.value,
        "attempts": d.attempts,
        "next_attempt_at": rfc3339(d.next_attempt_at) if d.status is DeliveryStatus.PENDING else None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
        "succeeded_at": rfc3339(d.succeeded_at),
    }


def attempt_json(a: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "at": rfc3339(a.at),
        "status_code": a.status_code,
        "error": a.error,
        "duration_ms": a.duration_ms,
    }


def delivery_detail_json(detail: service.DeliveryDetail) -> dict[str, Any]:
    return {**delivery_json(detail.delivery), "attempt_log": [attempt_json(a) for a in detail.attempts]}


@merchant_route
async def create_endpoint(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    body = Body(await read_json(request, ctx.settings.max_body, ctx.settings.body_timeout), {"url", "event_types"})
    url = endpoint_url(ctx, body.str("url", max_len=2048) or "")
    types = body.str_list("event_types", choices=EVENT_TYPES, max_items=len(EVENT_TYPES)) or []
    created = await service.create_endpoint(ctx, merchant_id, url, types)
    return web.json_response({**endpoint_json(created.endpoint), "secret": created.secret}, status=201)


@merchant_route
async def list_endpoints(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response({"data": [endpoint_json(e) for e in await service.list_endpoints(ctx, merchant_id)]})


@merchant_route
async def get_endpoint(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(endpoint_json(await service.get_endpoint(ctx, merchant_id, request.match_info["id"])))


@merchant_route
async def delete_endpoint(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    deleted = await service.delete_endpoint(ctx, merchant_id, request.match_info["id"])
    return web.json_response({**endpoint_json(deleted), "deleted": True})


@merchant_route
async def rotate_secret(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    rotated = await service.rotate_secret(ctx, merchant_id, request.match_info["id"])
    return web.json_response(
        {
            "id": rotated.endpoint_id,
            "secret": rotated.secret,
            "previous_secret_valid_until": rfc3339(rotated.previous_valid_until),
        }
    )


@merchant_route
async def list_deliveries(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    status = query_choice(request, "status", DELIVERY_STATUSES)
    page = await service.list_deliveries(
        ctx,
        merchant_id,
        status=status,
        event_id=request.query.get("event_id"),
        before=request.query.get("starting_after"),
        limit=query_int(request, "limit", 50, minimum=1, maximum=500),
    )
    return web.json_response({"data": [delivery_json(d) for d in page.data], "has_more": page.has_more})


@merchant_route
async def get_delivery(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    return web.json_response(
        delivery_detail_json(await service.get_delivery(ctx, merchant_id, request.match_info["id"]))
    )


@merchant_route
async def retry_delivery(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    detail = await service.retry_delivery(ctx, merchant_id, request.match_info["id"])
    return web.json_response(delivery_detail_json(detail))


async def delivery_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup_ctx: the delivery worker lives as long as the app.

    It sends through `app[TRANSPORT]` when the app was given one (whoever made it closes it), else
    through a transport of its own (`settings.webhook_sender`: a child process, or an in-process
    `AiohttpTransport`), closed after the worker has stopped.
    """
    ctx = app[CTX]
    given = app.get(TRANSPORT)
    transport: WebhookTransport
    if given is not None:
        transport = given
    elif ctx.settings.webhook_sender == "process":
        sender = SenderProcess(allow_private=ctx.settings.allow_private_webhooks)
        await sender.start()  # the first webhook should not wait for a process to start
        transport = sender
    else:
        transport = AiohttpTransport(allow_private=ctx.settings.allow_private_webhooks)
    task = spawn(DeliveryWorker(ctx, transport).run(), "webhook-worker")
    try:
        yield
    finally:
        await stop(task)
        if given is None:
            await transport.close()


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/webhook-endpoints", create_endpoint)
    app.router.add_get("/v1/webhook-endpoints", list_endpoints)
    app.router.add_get("/v1/webhook-endpoints/{id}", get_endpoint)
    app.router.add_delete("/v1/webhook-endpoints/{id}", delete_endpoint)
    app.router.add_post("/v1/webhook-endpoints/{id}/rotate-secret", rotate_secret)
    app.router.add_get("/v1/deliveries", list_deliveries)
    app.router.add_get("/v1/deliveries/{id}", get_delivery)
    app.router.add_post("/v1/deliveries/{id}/retry", retry_delivery)
