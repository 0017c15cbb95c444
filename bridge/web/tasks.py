"""Owned background tasks: started with a name, crashes logged, stopped in a bounded way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

__all__ = ["spawn", "stop"]

log = structlog.get_logger("bridge.app")


def spawn(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """Start an owned background task that logs if it crashes."""
    task = asyncio.create_task(coro, name=name)

    def done(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("task.crashed", task=name, error=repr(t.exception()))

    task.add_done_callback(done)
    return task


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a task and wait until it has finished."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
