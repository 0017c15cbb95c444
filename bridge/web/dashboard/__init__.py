"""The dashboard under /dashboard: merchants and the admin see and run everything in a browser.

Server-rendered pages (the shared Jinja2 environment) over the same services as the JSON API;
a server-side session from a form sign-in; a CSRF token on every form; live fragments over SSE.
"""

from __future__ import annotations

from aiohttp import web

from bridge.core.ratelimit import RateLimiter
from bridge.web.dashboard import accounts, admin, orders, payments, phones, shop, signin, webhooks
from bridge.web.keys import CTX, PAIR_WATCHES, SIGN_IN_LIMITER
from bridge.web.templating import setup_templates

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    setup_templates(app)
    per_minute = app[CTX].settings.dashboard_sign_ins_per_minute
    app[SIGN_IN_LIMITER] = RateLimiter(rate=per_minute, per=60.0, burst=per_minute)
    app[PAIR_WATCHES] = {}
    for module in (signin, phones, orders, payments, webhooks, accounts, shop, admin):
        module.add_routes(app)
