"""Reconnect backoff: a pure, capped, jittered, overflow-safe exponential schedule.

`delay_for(0)` is about `base`, each attempt doubles it up to `cap`, and the result is spread by
±`jitter` (a fraction) around that value so that many phones do not reconnect in lock-step
after a bridge restart. Randomness is passed in (any object with `uniform`, such as a seeded
`random.Random`); `jitter=0` makes the schedule exact and `base=0` is the zero-delay test mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

__all__ = ["BackoffPolicy", "Rng", "delay_for"]


class Rng(Protocol):
    """The part of `random.Random` the schedule uses."""

    def uniform(self, a: float, b: float) -> float: ...


def delay_for(attempt: int, *, base: float = 1.0, cap: float = 60.0, jitter: float = 0.2, rng: Rng) -> float:
    """Seconds to wait before reconnect attempt number `attempt` (0 for the first retry).

    The un-jittered delay is `min(cap, base * 2**attempt)`; it never overflows, however large
    `attempt` grows. The returned delay lies in `[d * (1 - jitter), d * (1 + jitter)]`.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must be >= 0")
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    if base == 0 or cap == 0:
        return 0.0
    # 2**attempt only matters while base * 2**attempt < cap; past that the cap wins, so the
    # exponent is clamped before it can overflow a float.
    limit = math.log2(cap / base) if cap > base else 0.0
    delay = cap if attempt >= limit + 1 else min(cap, base * math.ldexp(1.0, attempt))
    if jitter:
        delay *= 1.0 + rng.uniform(-jitter, jitter)
    return max(0.0, delay)


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """The reconnect schedule as one value; `BackoffPolicy(base=0)` never waits (tests)."""

    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.2

    def delay(self, attempt: int, rng: Rng) -> float:
        """`delay_for` with this policy's parameters."""
        return delay_for(attempt, base=self.base, cap=self.cap, jitter=self.jitter, rng=rng)
