"""Real parts for the shop gateway tests: a compat merchant with the vectors' pid and key, a GET receiver
that answers as a shop does, and a phone that pays."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from bridge.store import compat as compat_store
from tests.harness import RunningBridge, running_app


@dataclass
class Shop:
    merchant: dict[str, Any]
    compat: dict[str, Any]

    @property
    def api_key(self) -> str:
        return str(self.merchant["api_key"])

    @property
    def key(self) -> str:
        return str(self.compat["key"])


async def compat_shop(bridge: RunningBridge, *, key: str | None = None, pid: int | None = None) -> Shop:
    """A merchant with compat credentials; with `pid`, earlier merchants take the pids before it; with
    `key`, the key the vectors were signed with is set in the database (no API sets a chosen key)."""
    if pid is not None:
        while True:
            m = await bridge.merchant()
            status, creds = await bridge.call("GET", "/v1/compat", token=m["api_key"])
            assert status == 200, creds
            if creds["pid"] == pid:
                break
            assert creds["pid"] < pid
    else:
        m = await bridge.merchant()
        status, creds = await bridge.call("GET", "/v1/compat", token=m["api_key"])
        assert status == 200, creds
    if key is not None:
        merchant_id = m["id"]
        await bridge.ctx.db.write(lambda tx: compat_store.set_key(tx, merchant_id, key, now=0))
        creds = {**creds, "key": key}
    return Shop(m, creds)


@dataclass
class ShopReceiver:
    """A shop's notify URL: answers each GET with the next of `answers` (then the last one), records them."""

    answers: list[tuple[int, str]] = field(default_factory=lambda: [(200, "success")])
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # method, raw query, params
    url: str = ""
    on_request: Callable[[int], None] | None = None  # called with the request's number, before answering

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.query_string, dict(parse_qsl(request.query_string))))
        if self.on_request is not None:
            self.on_request(len(self.requests))
        status, text = self.answers[min(len(self.requests), len(self.answers)) - 1]
        return web.Response(status=status, text=text)

    def params(self) -> list[dict[str, str]]:
        return [p for _, _, p in self.requests]


@asynccontextmanager
async def shop_receiver(
    answers: list[tuple[int, str]] | None = None, path: str = "/notify"
) -> AsyncIterator[ShopReceiver]:
    rec = ShopReceiver(answers or [(200, "success")])
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    async with running_app(app) as base:
        rec.url = base + path
        yield rec


async def get_raw(bridge: RunningBridge, path_and_query: str, **kw: Any) -> tuple[int, str, dict[str, str]]:
    """GET without following redirects: (status, body text, headers)."""
    async with bridge.session.get(bridge.base_url + path_and_query, allow_redirects=False, **kw) as r:
        return r.status, await r.text(), dict(r.headers)


async def post_form(bridge: RunningBridge, path: str, form: dict[str, str]) -> tuple[int, str, dict[str, str]]:
    async with bridge.session.post(bridge.base_url + path, data=form, allow_redirects=False) as r:
        return r.status, await r.text(), dict(r.headers)


def path_of(url: str) -> str:
    """`https://pay.example.com/submit.php?a=b` -> `/submit.php?a=b` (the vectors name example.com hosts)."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


async def orders_of(bridge: RunningBridge, api_key: str) -> list[dict[str, Any]]:
    status, page = await bridge.call("GET", "/v1/orders?limit=500", token=api_key)
    assert status == 200, page
    return list(page["data"])
