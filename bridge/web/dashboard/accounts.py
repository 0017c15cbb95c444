"""Receiving accounts (收款码): list, add (paste the URL, or upload a picture of the code), link phones."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bridge.errors import BadRequest
from bridge.services import devices as devices_service
from bridge.services import payments as service
from bridge.services import qrimage
from bridge.services.views import linked_account_json
from bridge.web.dashboard.pages import PATH, View, form_str, page, redirect
from bridge.web.dashboard.phones import qr_svg

__all__ = ["add_routes"]

CHANNELS = ("alipay", "wechat", "unionpay")


async def _context(view: View) -> dict[str, Any]:
    accounts = [linked_account_json(a) for a in await service.list_accounts(view.ctx, view.merchant_id)]
    phones = [d for d in await devices_service.list_devices(view.ctx, view.merchant_id) if not d["revoked"]]
    names = {d["id"]: d["name"] for d in phones}
    for a in accounts:
        a["phone_names"] = [names.get(i, i) for i in a["device_ids"]]
        a["qr"] = qr_svg(a["qr_payload"]) if a["qr_payload"] else None
    return {
        "nav": "accounts",
        "accounts": accounts,
        "phones": phones,
        "channels": CHANNELS,
        "upload": qrimage.AVAILABLE,
        "done": view.request.query.get("done"),
    }


@page("merchant")
async def accounts(view: View) -> web.StreamResponse:
    return view.render("dashboard/accounts.html", await _context(view))


@page("merchant", max_upload=qrimage.MAX_BYTES)
async def add_account(view: View) -> web.StreamResponse:
    form = view.form
    channel = form_str(form, "channel", max_len=16)
    if channel not in CHANNELS:
        raise BadRequest(f"channel must be one of {', '.join(CHANNELS)}", "invalid_form")
    name = form_str(form, "name", max_len=128)
    payload = form_str(form, "qr_payload", max_len=2048, required=False)
    picture = form.get("qr_image")
    if not payload and isinstance(picture, bytes) and picture:
        payload = qrimage.decode_qr(picture)
    if not payload:
        raise BadRequest("paste the QR code's URL or upload a picture of it", "invalid_form")
    device = form_str(form, "device_id", max_len=64, required=False)
    await service.create_account(
        view.ctx,
        view.merchant_id,
        channel=channel,
        name=name,
        qr_payload=payload,
        device_ids=[device] if device else [],
    )
    raise redirect(f"{PATH}/accounts", done="account_added")


@page("merchant")
async def link(view: View) -> web.StreamResponse:
    device = form_str(view.form, "device_id", max_len=64)
    await service.link_device(view.ctx, view.merchant_id, view.request.match_info["id"], device)
    raise redirect(f"{PATH}/accounts", done="linked")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/accounts", accounts)
    app.router.add_post(f"{PATH}/accounts", add_account)
    app.router.add_post(f"{PATH}/accounts/{{id}}/link", link)
