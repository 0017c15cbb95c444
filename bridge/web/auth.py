"""Bearer credentials: the admin token and merchant API keys (hashed, compared in constant time)."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from bridge.core.tokens import hash_secret
from bridge.errors import Unauthorized
from bridge.services import admin as admin_service
from bridge.services.context import Context
from bridge.web.keys import ADMIN_HASH, CTX, KEY_CACHE

__all__ = ["admin_or_merchant", "merchant_route", "require_admin", "require_merchant"]


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <api key>", headers={"WWW-Authenticate": "Bearer"})
    # Keys and tokens are printable ASCII; anything else (aiohttp hands non-UTF-8 header bytes on
    # as lone surrogates, which cannot even be hashed) is simply not a credential.
    if not (token.isascii() and token.isprintable()):
        raise Unauthorized("the bearer token must be printable ASCII", headers={"WWW-Authenticate": "Bearer"})
    return token


def _is_admin(request: web.Request, token: str) -> bool:
    return hmac.compare_digest(hash_secret(token), request.app[ADMIN_HASH])


async def _merchant_id(request: web.Request, token: str) -> str | None:
    digest = hash_secret(token)
    cache = request.app[KEY_CACHE]
    if digest in cache:
        return cache[digest]

    merchant_id = await admin_service.merchant_for_key(request.app[CTX], digest)
    if merchant_id is not None:
        if len(cache) > 10_000:
            cache.clear()
        cache[digest] = merchant_id
    return merchant_id


async def require_admin(request: web.Request) -> None:
    if not _is_admin(request, _bearer(request)):
        raise Unauthorized("this needs the admin token", headers={"WWW-Authenticate": "Bearer"})


async def require_merchant(request: web.Request) -> str:
    merchant_id = await _merchant_id(request, _bearer(request))
    if merchant_id is None:
        raise Unauthorized("invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return merchant_id


async def admin_or_merchant(request: web.Request) -> str | None:
    """None for the admin (sees everything), else the merchant id."""
    token = _bearer(request)
    if _is_admin(request, token):
        return None
    merchant_id = await _merchant_id(request, token)
    if merchant_id is None:
        raise Unauthorized("invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return merchant_id


R = TypeVar("R", bound=web.StreamResponse)


def merchant_route(
    fn: Callable[[web.Request, Context, str], Awaitable[R]],
) -> Callable[[web.Request], Awaitable[R]]:
    """A merchant API handler: authenticated by API key, called with the context and the merchant id."""

    @functools.wraps(fn)
    async def handler(request: web.Request) -> R:
        merchant_id = await require_merchant(request)
        return await fn(request, request.app[CTX], merchant_id)

    return handler
