"""The events feed: `GET /v1/events` (paged) and `GET /v1/events/stream` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from bridge.services import endpoints as service
from bridge.web.auth import require_merchant
from bridge.web.keys import CTX
from bridge.web.validation import query_int

__all__ = ["add_routes"]

KEEPALIVE_S = 15.0


async def list_events(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    merchant_id = await require_merchant(request)
    limit = query_int(request, "limit", 100, minimum=1, maximum=1000)
    rows, has_more = await service.list_events(ctx, merchant_id, after=request.query.get("after"), limit=limit)
    body = (
        '{"data":[' + ",".join(str(r["body"]) for r in rows) + '],"has_more":' + ("true" if has_more else "false") + "}"
    )
    return web.Response(text=body, content_type="application/json")


async def stream_events(request: web.Request) -> web.StreamResponse:
    """SSE: every event after `Last-Event-ID` (or `?after=`), then live ones as they commit."""
    ctx = request.app[CTX]
    merchant_id = await require_merchant(request)
    after = request.headers.get("Last-Event-ID") or request.query.get("after")
    await service.list_events(ctx, merchant_id, after=after, limit=1)  # validates `after` before we start
    wake = ctx.bus.subscribe(merchant_id)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    try:
        while not ctx.bus.closed:
            wake.clear()
            rows, has_more = await service.list_events(ctx, merchant_id, after=after, limit=500)
            for r in rows:
                await resp.write(f"id: {r['id']}\nevent: {_type(r['body'])}\ndata: {r['body']}\n\n".encode())
                after = str(r["id"])
            if has_more:
                continue
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        ctx.bus.unsubscribe(merchant_id, wake)
    with contextlib.suppress(Exception):
        await resp.write_eof()
    return resp


def _type(body: str) -> str:
    # bodies are our own compact JSON: {"id":"…","type":"…",…}
    start = body.find('"type":"') + 8
    return body[start : body.find('"', start)]


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/v1/events/stream", stream_events)
