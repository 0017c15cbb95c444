"""Token buckets keyed by client (pure: the caller passes `now` in seconds), client networks, and
the decision of a windowed counter kept in the database (shared by every instance).

Which limits are shared by the instances on one database, and why the others are not:
- shared (bridge/services/ratelimits.py): pairing attempts per client network and pairing codes
  per merchant. Pairing codes are the one secret short enough to guess (40 bits), so N instances
  each granting the full budget would multiply an attacker's guesses (and live targets) by N.
- per instance (this module's RateLimiter): frames per device connection (a connection lives on
  one instance, so the instance is exactly its scope); checkout page views and misses and failed
  dashboard sign-ins per address (what they guard is at least 80 bits, so a budget times N still
  finds nothing; they bound the load each instance takes, and that is per instance by nature);
  event streams per merchant (a cap on what one process holds open).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["RateLimiter", "client_network", "window_wait"]


def client_network(address: str) -> str:
    """The network a client address stands for, as a rate-limit key.

    One host can use a whole IPv6 /64 (SLAAC, privacy addresses) or every address of 127.0.0.0/8,
    so limiting the exact address lets it walk around the limit. IPv6 counts per /64, IPv4 per /24,
    all loopback as one; an IPv4-mapped IPv6 address counts as its IPv4 address. Anything that is
    not an IP address (a Unix socket peer) is its own key.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("fe80::1%eth0")
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    prefix = 64 if ip.version == 6 else 24
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


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


def window_wait(*, previous: int, current: int, elapsed: float, limit: int) -> float:
    """A sliding-window counter's decision: 0.0 if an attempt is allowed, else how long until it
    would be, in windows.

    `current` counts the attempts of the current fixed window including this one, `previous` those
    of the window before, `elapsed` how far into the current window we are (0..1). The previous
    window weighs what is left of it (`current + previous * (1 - elapsed)`), so no burst of twice
    the limit fits around a window's boundary. `limit` is at least 1.
    """
    if current + previous * (1.0 - elapsed) <= limit:
        return 0.0
    if previous > 0 and current <= limit:  # later in this window, when the previous one weighs less
        return max(0.0, 1.0 - (limit - current) / previous - elapsed)
    before = current - 1  # without this attempt: what the next window's previous will hold
    return (1.0 - elapsed) + (0.0 if before == 0 else max(0.0, 1.0 - (limit - 1) / before))
