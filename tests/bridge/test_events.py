"""The events feed: `GET /v1/events` paging, and the Server-Sent Events stream (resume, live, shutdown)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.harness import RunningBridge, make_settings, running_bridge, sse_frames, take_frames


async def _closed_orders(bridge: RunningBridge, key: str, n: int) -> list[str]:
    """Create and close `n` orders (one order.closed event each); return their ids in order."""
    ids = []
    for i in range(n):
        o = await bridge.order(key, f"{i + 1}.00")
        status, _ = await bridge.call("POST", f"/v1/orders/{o['id']}/close", token=key)
        assert status == 200
        ids.append(o["id"])
    return ids


async def test_events_page_in_order(bridge: RunningBridge) -> None:
    """GET /v1/events returns event bodies oldest first, pages with after/has_more, and rejects unknown cursors."""
    m = await bridge.merchant()
    key = m["api_key"]
    orders = await _closed_orders(bridge, key, 3)
    _, page = await bridge.call("GET", "/v1/events?limit=2", token=key)
    assert [e["data"]["order"]["id"] for e in page["data"]] == orders[:2] and page["has_more"] is True
    first = page["data"][0]
    assert set(first) == {"id", "type", "timestamp", "data"} and first["type"] == "order.closed"
    _, rest = await bridge.call("GET", f"/v1/events?after={page['data'][1]['id']}", token=key)
    assert [e["data"]["order"]["id"] for e in rest["data"]] == orders[2:] and rest["has_more"] is False
    status, bad = await bridge.call("GET", "/v1/events?after=evt_nope", token=key)
    assert status == 400 and bad["error"]["code"] == "unknown_event"
    status, bad = await bridge.call("GET", "/v1/events?limit=0", token=key)
    assert status == 400


async def test_events_are_per_merchant(bridge: RunningBridge) -> None:
    """Another merchant's feed is empty, and your event ids are unknown cursors to it."""
    a = await bridge.merchant("a")
    b = await bridge.merchant("b")
    await _closed_orders(bridge, a["api_key"], 1)
    _, mine = await bridge.call("GET", "/v1/events", token=a["api_key"])
    _, theirs = await bridge.call("GET", "/v1/events", token=b["api_key"])
    assert len(mine["data"]) == 1 and theirs["data"] == []
    status, _ = await bridge.call("GET", f"/v1/events?after={mine['data'][0]['id']}", token=b["api_key"])
    assert status == 400
    status, _ = await bridge.call("GET", "/v1/events")
    assert status == 401


async def test_sse_resumes_after_last_event_id_and_streams_live(bridge: RunningBridge) -> None:
    """The stream replays what came after Last-Event-ID, then carries new events as they commit."""
    m = await bridge.merchant()
    key = m["api_key"]
    _, o2 = await _closed_orders(bridge, key, 2)
    _, page = await bridge.call("GET", "/v1/events", token=key)
    first = page["data"][0]
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            bridge.base_url + "/v1/events/stream",
            headers={"Authorization": f"Bearer {key}", "Last-Event-ID": first["id"]},
        ) as resp,
    ):
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        frames = sse_frames(resp)
        [replayed] = await asyncio.wait_for(take_frames(frames, 1), 10)
        [o3] = await _closed_orders(bridge, key, 1)
        [live] = await asyncio.wait_for(take_frames(frames, 1), 10)
    for frame, order_id in ((replayed, o2), (live, o3)):
        body = json.loads(frame["data"])
        assert frame["event"] == body["type"] == "order.closed"
        assert frame["id"] == body["id"] and body["data"]["order"]["id"] == order_id


async def test_sse_after_query_and_bad_cursor(bridge: RunningBridge) -> None:
    """?after= works like Last-Event-ID; an unknown cursor is a 400 before the stream starts."""
    m = await bridge.merchant()
    key = m["api_key"]
    await _closed_orders(bridge, key, 3)
    _, page = await bridge.call("GET", "/v1/events", token=key)
    ids = [e["id"] for e in page["data"]]
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{bridge.base_url}/v1/events/stream?after={ids[0]}", headers={"Authorization": f"Bearer {key}"}) as r,
    ):
        frames = await asyncio.wait_for(take_frames(sse_frames(r), 2), 10)
    assert [f["id"] for f in frames] == ids[1:]
    status, out = await bridge.call("GET", "/v1/events/stream", token=key, headers={"Last-Event-ID": "evt_gone"})
    assert status == 400 and out["error"]["code"] == "unknown_event"


async def test_sse_ends_cleanly_when_the_bridge_shuts_down(tmp_path: Path) -> None:
    """A connected stream is finished properly (not cut off) when the app stops."""
    got: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as s:
        async with running_bridge(make_settings(tmp_path / "d")) as b:
            m = await b.merchant()
            await _closed_orders(b, m["api_key"], 1)
            resp = await s.get(b.base_url + "/v1/events/stream", headers={"Authorization": f"Bearer {m['api_key']}"})

            async def read_all() -> None:
                async for f in sse_frames(resp):  # a ClientPayloadError here means the stream was cut off
                    got.append(json.loads(f["data"]))

            reader = asyncio.create_task(read_all())
            for _ in range(1000):  # bounded wait for the replayed event
                if got:
                    break
                assert not reader.done(), reader
                await asyncio.sleep(0.01)
            assert got
        # the bridge has stopped: the stream must have ended with a proper end of body
        await asyncio.wait_for(reader, 10)
        resp.release()
    assert [e["type"] for e in got] == ["order.closed"]
