"""Typed keys of what the aiohttp Application carries."""

from __future__ import annotations

from aiohttp import web

from bridge.core.ratelimit import RateLimiter
from bridge.services.context import Context
from bridge.web.hub import DeviceHub

__all__ = [
    "ADMIN_HASH",
    "CHECKOUT_LIMITER",
    "CHECKOUT_MISSES",
    "CTX",
    "HUB",
    "KEY_CACHE",
    "PAIR_WATCHES",
    "SIGN_IN_LIMITER",
]

CTX = web.AppKey("ctx", Context)
ADMIN_HASH = web.AppKey("admin_hash", str)
KEY_CACHE = web.AppKey("key_cache", dict[str, str])
HUB = web.AppKey("hub", DeviceHub)
CHECKOUT_LIMITER = web.AppKey("checkout_limiter", RateLimiter)  # per (address, order): page views and polls
CHECKOUT_MISSES = web.AppKey("checkout_misses", RateLimiter)  # per address: unknown order ids
SIGN_IN_LIMITER = web.AppKey("sign_in_limiter", RateLimiter)  # per address: failed dashboard sign-ins
# The dashboard's pairing pages: watch token -> (merchant id, pairing code, expires at ms). Kept in
# memory only: the code is secret, the page polls with the token, and a restart simply ends the watch.
PAIR_WATCHES = web.AppKey("pair_watches", dict[str, tuple[str, str, int]])
