"""Time as a seam: services ask a Clock, tests may move it."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock", "rfc3339"]


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Wall-clock Unix milliseconds; `offset_ms` lets a test (or an operator drill) jump it."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms


@functools.lru_cache(maxsize=4096)
def _second(s: int) -> str:
    return datetime.fromtimestamp(s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def rfc3339(ms: int | None) -> str | None:
    """Unix ms -> "2026-11-27T01:02:03.456Z" (UTC), None stays None."""
    if ms is None:
        return None
    return f"{_second(ms // 1000)}{ms % 1000:03d}Z"
