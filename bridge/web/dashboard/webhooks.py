"""Webhooks: endpoints (add, remove, rotate the secret: shown once, send a test event) and deliveries
(each with its attempts; retry)."""

from __future__ import annotations

from aiohttp import web

from bridge.clock import rfc3339
from bridge.errors import BadRequest
from bridge.services import endpoints as service
from bridge.services.events import EVENT_TYPES
from bridge.web.dashboard.pages import PATH, View, form_str, page, redirect
from bridge.web.webhooks import DELIVERY_STATUSES, delivery_detail_json, delivery_json, endpoint_json, endpoint_url

__all__ = ["add_routes"]


async def _overview(view: View) -> dict[str, object]:
    status = view.request.query.get("status") or None
    if status is not None and status not in DELIVERY_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(DELIVERY_STATUSES)}", "invalid_filter")
    endpoints = await service.list_endpoints(view.ctx, view.merchant_id)
    deliveries = await service.list_deliveries(
        view.ctx, view.merchant_id, status=status, event_id=None, before=None, limit=50
    )
    return {
        "nav": "webhooks",
        "endpoints": [endpoint_json(e) for e in endpoints],
        "deliveries": [delivery_json(d) for d in deliveries.data],
        "event_types": EVENT_TYPES,
        "delivery_statuses": DELIVERY_STATUSES,
        "status": status,
        "done": view.request.query.get("done"),
        "secret": None,
    }


@page("merchant")
async def webhooks(view: View) -> web.StreamResponse:
    return view.render("dashboard/webhooks.html", await _overview(view))


@page("merchant")
async def add_endpoint(view: View) -> web.StreamResponse:
    url = endpoint_url(view.ctx, form_str(view.form, "url", max_len=2048))
    getall = getattr(view.form, "getall", None)
    types = [str(t) for t in (getall("event_types", []) if getall else [])]
    if any(t not in EVENT_TYPES for t in types):
        raise BadRequest("unknown event type", "invalid_form")
    created = await service.create_endpoint(view.ctx, view.merchant_id, url, types)
    context = await _overview(view)
    endpoint = endpoint_json(created.endpoint)
    context["secret"] = {"endpoint": endpoint, "value": created.secret, "new": True, "old_until": None}
    return view.render("dashboard/webhooks.html", context, status=201)


@page("merchant")
async def remove_endpoint(view: View) -> web.StreamResponse:
    await service.delete_endpoint(view.ctx, view.merchant_id, view.request.match_info["id"])
    raise redirect(f"{PATH}/webhooks", done="removed")


@page("merchant")
async def rotate(view: View) -> web.StreamResponse:
    rotated = await service.rotate_secret(view.ctx, view.merchant_id, view.request.match_info["id"])
    context = await _overview(view)
    context["secret"] = {
        "endpoint": {"id": rotated.endpoint_id},
        "value": rotated.secret,
        "new": False,
        "old_until": rfc3339(rotated.previous_valid_until),
    }
    return view.render("dashboard/webhooks.html", context)


@page("merchant")
async def send_test(view: View) -> web.StreamResponse:
    sent = await service.send_test_event(view.ctx, view.merchant_id, view.request.match_info["id"])
    raise redirect(f"{PATH}/deliveries/{sent.delivery_id}", done="test_sent")


@page("merchant")
async def delivery(view: View) -> web.StreamResponse:
    d = delivery_detail_json(await service.get_delivery(view.ctx, view.merchant_id, view.request.match_info["id"]))
    return view.render("dashboard/delivery.html", {"nav": "webhooks", "d": d, "done": view.request.query.get("done")})


@page("merchant")
async def retry(view: View) -> web.StreamResponse:
    delivery_id = view.request.match_info["id"]
    await service.retry_delivery(view.ctx, view.merchant_id, delivery_id)
    raise redirect(f"{PATH}/deliveries/{delivery_id}", done="retried")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/webhooks", webhooks)
    app.router.add_post(f"{PATH}/webhooks", add_endpoint)
    app.router.add_post(f"{PATH}/webhooks/{{id}}/remove", remove_endpoint)
    app.router.add_post(f"{PATH}/webhooks/{{id}}/rotate", rotate)
    app.router.add_post(f"{PATH}/webhooks/{{id}}/test", send_test)
    app.router.add_get(f"{PATH}/deliveries/{{id}}", delivery)
    app.router.add_post(f"{PATH}/deliveries/{{id}}/retry", retry)
