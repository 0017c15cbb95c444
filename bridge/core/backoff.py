"""The webhook retry schedule: pure, capped, jittered, overflow-safe."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["DEFAULT_SCHEDULE", "ZERO_DELAY", "RetryPolicy", "delay_for"]

# Seconds before attempt 1, 2, 3, … (attempt 1 is immediate).
DEFAULT_SCHEDULE: tuple[int, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule: tuple[int, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2  # ±20 %
    max_retry_after: int = 36000  # a Retry-After header is honoured up to this many seconds

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)


ZERO_DELAY = RetryPolicy(schedule=(0,) * len(DEFAULT_SCHEDULE), jitter=0.0)


def delay_for(attempt: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None = None) -> float | None:
    """Seconds to wait before `attempt` (1-based), or None when no attempt is left.

    `retry_after` (from the receiver's header) replaces the scheduled delay when it is longer,
    capped at `policy.max_retry_after`.
    """
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    if attempt > policy.max_attempts:
        return None
    base = float(policy.schedule[attempt - 1])
    delay = base * (1.0 + policy.jitter * (2.0 * rng.random() - 1.0))  # a base of 0 stays 0
    if retry_after is not None and retry_after > delay:
        delay = min(float(retry_after), float(policy.max_retry_after))
    return max(0.0, delay)
