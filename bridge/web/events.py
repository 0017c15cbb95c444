"""The events feed: `GET /v1/events` (paged) and `GET /v1/events/stream` (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from bridge.core.models.event import Event, Position
from bridge.errors import DatabaseUnavailable, RateLimited
from bridge.services import events as service
from bridge.services.context import Context
from bridge.web.auth import merchant_route
from bridge.web.validation import query_int

__all__ = ["add_routes"]

KEEPALIVE_S = 15.0
UNSETTLED_S = 0.02  # first look again at events an older transaction holds back; doubling up to
UNSETTLED_MAX_S = 1.0
SETTLE_S = 1.0  # GET /v1/events waits this long at most for events an older transaction holds back


@merchant_route
async def list_events(request: web.Request, ctx: Context, merchant_id: str) -> web.Response:
    limit = query_int(request, "limit", 100, minimum=1, maximum=1000)
    page = await service.list_events(
        ctx.db, merchant_id, after=request.query.get("after") or None, limit=limit, settle_s=SETTLE_S
    )
    more = "true" if page.has_more else "false"
    body = '{"data":[' + ",".join(e.body for e in page.events) + '],"has_more":' + more + "}"
    return web.Response(text=body, content_type="application/json")


@merchant_route
async def stream_events(request: web.Request, ctx: Context, merchant_id: str) -> web.StreamResponse:
    """SSE: every event after `Last-Event-ID` (or `?after=`), then live ones as they commit, on
    whichever instance they commit (the bus wakes this stream; it reads them from the database in
    commit order, so a stream resumed on another instance gets exactly the rest).

    Ends when the client goes away or the app shuts down (`ctx.bus.close()` wakes every stream).
    """
    cursor = request.headers.get("Last-Event-ID") or request.query.get("after") or None
    # A bad cursor is a 400, before we start; from here on the stream holds a position.
    await service.list_events(ctx.db, merchant_id, after=cursor, limit=1)
    after: Position | str | None = cursor
    # Checked and taken with no await in between, so concurrent requests cannot overshoot the cap.
    if ctx.bus.streams(merchant_id) >= ctx.settings.max_event_streams:
        raise RateLimited(
            f"at most {ctx.settings.max_event_streams} event streams per merchant are open at once; close one",
            "too_many_streams",
            headers={"Retry-After": str(int(KEEPALIVE_S))},
        )
    wake = ctx.bus.subscribe(merchant_id)
    try:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        held = 0  # looks in a row that found events held back
        while not ctx.bus.closed:
            wake.clear()  # before the query: an event committed during it wakes the next wait
            page = await service.list_events(ctx.db, merchant_id, after=after, limit=500)
            if page.events:
                await resp.write(b"".join(_frame(e) for e in page.events))
                after = page.events[-1].position
            if page.has_more:
                continue
            # Events held back behind an older transaction get no second wake-up: look again soon.
            held = held + 1 if page.unsettled else 0
            wait = min(UNSETTLED_MAX_S, UNSETTLED_S * 2 ** min(held, 10)) if held else KEEPALIVE_S
            try:
                async with asyncio.timeout(wait):  # not wait_for: it can swallow a cancellation on 3.11
                    await wake.wait()
            except TimeoutError:
                if not held:
                    await resp.write(b": keep-alive\n\n")
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
    except ConnectionResetError:  # the client went away
        pass
    except DatabaseUnavailable:  # the database is closing under a stream that missed the shutdown wake-up
        pass
    finally:
        ctx.bus.unsubscribe(merchant_id, wake)
    return resp


def _frame(event: Event) -> bytes:
    return f"id: {event.id}\nevent: {event.type}\ndata: {event.body}\n\n".encode()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/events", list_events)
    app.router.add_get("/v1/events/stream", stream_events)
