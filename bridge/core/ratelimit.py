"""Token buckets keyed by client (pure: the caller passes `now` in seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """`rate` tokens per `per` seconds, bursting to `burst`; at most `max_keys` clients remembered."""

    rate: float
    per: float
    burst: float
    max_keys: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def allow(self, key: str, now: float, cost: float = 1.0) -> bool:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            b = self._buckets[key] = _Bucket(self.burst, now)
        b.tokens = min(self.burst, b.tokens + max(0.0, now - b.updated) * self.rate / self.per)  # clocks step back
        b.updated = now
        if b.tokens >= cost:
            b.tokens -= cost
            return True
        return False

    def blocked(self, key: str, now: float, cost: float = 1.0) -> bool:
        """Would `allow` refuse now? (Takes nothing.)"""
        b = self._buckets.get(key)
        if b is None:
            return False
        return min(self.burst, b.tokens + max(0.0, now - b.updated) * self.rate / self.per) < cost

    def retry_after(self, key: str, cost: float = 1.0) -> float:
        b = self._buckets.get(key)
        if b is None or b.tokens >= cost:
            return 0.0
        return (cost - b.tokens) * self.per / self.rate

    def _evict(self, now: float) -> None:
        refill = self.rate / self.per
        full = [k for k, b in self._buckets.items() if b.tokens + (now - b.updated) * refill >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()
