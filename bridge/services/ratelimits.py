"""Rate limits shared by every instance on one database (which ones, and why: bridge.core.ratelimit)."""

from __future__ import annotations

from bridge.core.ratelimit import window_wait
from bridge.services.context import Context
from bridge.store import ratelimits as store
from bridge.store.database import Tx

__all__ = ["KEEP_MS", "prune", "take"]

KEEP_MS = 3_600_000  # counters older than this are dropped (windows are at most this long)


async def take(ctx: Context, key: str, *, limit: int, per_s: float) -> float:
    """Count an attempt against `limit` per `per_s` seconds for `key`, on every instance alike:
    0.0 if it is allowed, else the seconds to wait (the attempt was not counted)."""
    per_ms = max(1, int(per_s * 1000))

    def op(tx: Tx) -> float:
        now = ctx.clock.now_ms()
        start = now - now % per_ms
        current = store.count_hit(tx, key, window_start=start)
        previous = store.previous_hits(tx, key, window_start=start - per_ms)
        wait = window_wait(previous=previous, current=current, elapsed=(now - start) / per_ms, limit=limit)
        if wait > 0:
            store.undo_hit(tx, key, window_start=start)
        return wait * per_s

    return await ctx.db.write(op)


async def prune(ctx: Context) -> int:
    """Drop counters no limit looks at any more; how many."""

    def op(tx: Tx) -> int:
        return store.drop_windows_before(tx, ctx.clock.now_ms() - KEEP_MS)

    return await ctx.db.write(op)
