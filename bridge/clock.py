"""Time as a seam: services ask a Clock, tests may move it."""

from __future__ import annotations

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


def rfc3339(ms: int | None) -> str | None:
    """Unix ms -> "2026-11-27T01:02:03.456Z" (UTC), None stays None."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
