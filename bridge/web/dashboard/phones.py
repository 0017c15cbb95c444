"""Phones: live status, revoking (after a confirmation page), pairing with a QR code; the live SSE feed."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any

import segno
from aiohttp import web
from markupsafe import Markup

from bridge.clock import rfc3339
from bridge.errors import NotFound, Unavailable
from bridge.services import admin as admin_service
from bridge.services import devices as service
from bridge.services import payments as payments_service
from bridge.services.events import ALL
from bridge.services.sessions import load_session
from bridge.web.dashboard.pages import NO_STORE, PATH, View, page, redirect
from bridge.web.keys import PAIR_WATCHES

__all__ = ["add_routes", "qr_svg"]

KEEPALIVE_S = 15.0
MAX_WATCHES = 1000


def qr_svg(payload: str) -> Markup:
    svg = segno.make(payload, error="m").svg_inline(scale=5, border=2, omitsize=True, light="#fff", dark="#000")
    return Markup(svg)  # noqa: S704 - segno's own markup; the payload is encoded as modules, never as text


async def _phones(view: View) -> dict[str, Any]:
    """The devices the session may see, with account and merchant names."""
    ctx = view.ctx
    devices = await service.list_devices(ctx, view.session.merchant_id)
    names: dict[str, str] = {}
    merchants: dict[str, str] = {}
    if view.session.merchant_id is not None:
        names = {
            la.account.id: la.account.name for la in await payments_service.list_accounts(ctx, view.session.merchant_id)
        }
    else:
        merchants = {m.id: m.name for m in await admin_service.list_merchants(ctx)}
    for d in devices:
        d["account_names"] = [names.get(a, a) for a in d["account_ids"]]
        d["merchant_name"] = merchants.get(d["merchant_id"], "")
        hb = d["last_heartbeat"] or {}
        d["battery"] = hb.get("battery")
        d["outbox_depth"] = hb.get("outbox_depth")
        d["last_by_app"] = sorted((pkg, rfc3339(int(ms))) for pkg, ms in (hb.get("last_notification_at") or {}).items())
    active = [d for d in devices if not d["revoked"]]
    return {"phones": active, "revoked_count": len(devices) - len(active)}


@page("any")
async def phones(view: View) -> web.StreamResponse:
    data = await _phones(view)
    if "fragment" in view.request.query:
        return view.render("dashboard/phones_list.html", data)
    return view.render("dashboard/phones.html", {**data, "nav": "phones"})


@page("any")
async def revoke_page(view: View) -> web.StreamResponse:
    device = await service.get_device(view.ctx, view.session.merchant_id, view.request.match_info["id"])
    return view.render("dashboard/revoke.html", {"device": device, "nav": "phones"})


@page("any")
async def revoke(view: View) -> web.StreamResponse:
    await service.revoke_device(view.ctx, view.session.merchant_id, view.request.match_info["id"])  # the bus kicks
    raise redirect(f"{PATH}/phones")


def _watches(view: View) -> dict[str, tuple[str, str, int]]:
    watches = view.request.app[PAIR_WATCHES]
    now = view.ctx.clock.now_ms()
    for token in [k for k, (_, _, until) in watches.items() if until <= now]:
        del watches[token]
    return watches


@page("merchant")
async def pair(view: View) -> web.StreamResponse:
    """A new pairing code, shown as a QR code and as text; the page watches for the phone."""
    ctx = view.ctx
    code, expires_at = await service.create_pairing_code(ctx, view.merchant_id)
    watches = _watches(view)
    if len(watches) >= MAX_WATCHES:
        raise Unavailable("too many pairing pages open; try again in a few minutes")
    token = secrets.token_urlsafe(18)
    watches[token] = (view.merchant_id, code, expires_at)
    link = service.pair_url(ctx.base_url, code)
    return view.render(
        "dashboard/pair.html",
        {
            "nav": "phones",
            "code": code,
            "server": ctx.base_url,
            "expires_at": rfc3339(expires_at),
            "qr": qr_svg(link),
            "watch_url": f"{PATH}/phones/pairing/{token}",
        },
    )


@page("merchant")
async def pairing_status(view: View) -> web.StreamResponse:
    watch = _watches(view).get(view.request.match_info["token"])
    if watch is None or watch[0] != view.merchant_id:
        raise NotFound("no such pairing page")
    device = await service.pairing_outcome(view.ctx, view.merchant_id, watch[1])
    body = {"paired": device is not None, "name": device["name"] if device else None}
    return web.json_response(body, headers=NO_STORE)


@page("any")
async def live(view: View) -> web.StreamResponse:
    """SSE: `change` after every commit that raised an event for the session's merchant (any, for the admin).

    The page then fetches its live fragments again. Ends when the browser goes away, the session
    ends, or the app shuts down."""
    ctx = view.ctx
    key = view.session.merchant_id or ALL
    wake = ctx.bus.subscribe(key)
    resp = web.StreamResponse(headers={**NO_STORE, "Content-Type": "text/event-stream", "X-Accel-Buffering": "no"})
    try:
        await resp.prepare(view.request)
        await resp.write(b"retry: 2000\n\n")
        while not ctx.bus.closed:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    await wake.wait()
                wake.clear()
                await resp.write(b"event: change\ndata: {}\n\n")
                await asyncio.sleep(0.1)  # a burst of commits is one refresh
            except TimeoutError:
                if await load_session(ctx, view.session.id, touch=False) is None:
                    break
                await resp.write(b": keep-alive\n\n")
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
    except ConnectionResetError:
        pass
    finally:
        ctx.bus.unsubscribe(key, wake)
    return resp


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/phones", phones)
    app.router.add_get(f"{PATH}/phones/{{id}}/revoke", revoke_page)
    app.router.add_post(f"{PATH}/phones/{{id}}/revoke", revoke)
    app.router.add_post(f"{PATH}/phones/pair", pair)
    app.router.add_get(f"{PATH}/phones/pairing/{{token}}", pairing_status)
    app.router.add_get(f"{PATH}/live", live)
