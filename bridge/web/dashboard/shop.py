"""Shop settings: the compat (易支付 / V免签) credentials and, per shop software, the settings to paste
(the same `shop_setup` structure `paybridge compat` prints); rotating the compat key; registering or
clearing the merchant's RSA public key for 易支付 V2.

The compat key is masked on the page; "show the key" is a POST (CSRF-checked, answered no-store), so
the key is never in a URL, a GET response or the browser's history. After a rotation the new key is
shown in full.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from bridge.errors import BadRequest
from bridge.services import compat as service
from bridge.services.shop_setup import credential_fields, shop_setups
from bridge.services.views import credentials_json
from bridge.web.dashboard.pages import PATH, View, form_str, page, redirect

__all__ = ["add_routes", "masked"]

log = structlog.get_logger("bridge.dashboard")

MAX_PUBLIC_KEY = 4096
DONE = ("public_key_saved", "public_key_cleared")


def masked(key: str) -> str:
    """The key hidden but for its last four characters (enough to tell which key a shop has); the dots do
    not tell its length."""
    return "•" * 8 + key[-4:]


async def _context(view: View, *, reveal: bool, rotated: str | None = None, error: str | None = None) -> dict[str, Any]:
    creds = credentials_json(view.ctx, await service.credentials(view.ctx, view.merchant_id))
    done = view.request.query.get("done") if view.request.method == "GET" else None
    return {
        "nav": "shop",
        "creds": creds,
        "credentials": credential_fields(creds),
        "setups": shop_setups(creds),
        "masked": masked(str(creds["key"])),
        "reveal": reveal,
        "rotated": rotated,
        "done": done if done in DONE else None,
        "error": error,
        "note_lang": view.lang,
    }


@page("merchant")
async def settings(view: View) -> web.StreamResponse:
    return view.render("dashboard/shop.html", await _context(view, reveal=False))


@page("merchant")
async def reveal(view: View) -> web.StreamResponse:
    log.info("dashboard.compat_key_shown", merchant_id=view.merchant_id)
    return view.render("dashboard/shop.html", await _context(view, reveal=True))


@page("merchant")
async def confirm_rotate(view: View) -> web.StreamResponse:
    key = (await service.credentials(view.ctx, view.merchant_id)).key
    context = {"nav": "shop", "masked": masked(key), "fingerprint": service.key_fingerprint(key)}
    return view.render("dashboard/shop_rotate.html", context)


@page("merchant")
async def rotate(view: View) -> web.StreamResponse:
    """Rotate the key the confirmation page was made for; the form sent again (a reload) rotates nothing
    and shows the current key."""
    fingerprint = form_str(view.form, "key", max_len=64)
    _, rotated = await service.rotate_key_if(view.ctx, view.merchant_id, fingerprint)
    status = "rotated" if rotated else "already_rotated"
    return view.render("dashboard/shop.html", await _context(view, reveal=True, rotated=status))


@page("merchant")
async def public_key(view: View) -> web.StreamResponse:
    """Register (`action=save`, the key pasted) or clear (`action=clear`) the merchant's V2 public key."""
    action = view.form.get("action")
    if action == "clear":
        await service.set_merchant_public_key(view.ctx, view.merchant_id, None)
        raise redirect(f"{PATH}/shop", done="public_key_cleared")
    if action != "save":
        raise BadRequest("action must be save or clear", "invalid_form")
    try:
        key = form_str(view.form, "merchant_public_key", max_len=MAX_PUBLIC_KEY)
        await service.set_merchant_public_key(view.ctx, view.merchant_id, key)
    except BadRequest as e:  # the page again, the message beside the form
        return view.render("dashboard/shop.html", await _context(view, reveal=False, error=e.message), status=400)
    raise redirect(f"{PATH}/shop", done="public_key_saved")


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"{PATH}/shop", settings)
    app.router.add_post(f"{PATH}/shop/reveal", reveal)
    app.router.add_get(f"{PATH}/shop/rotate", confirm_rotate)
    app.router.add_post(f"{PATH}/shop/rotate", rotate)
    app.router.add_post(f"{PATH}/shop/public-key", public_key)
