"""Token buckets keyed by client (pure: the caller passes `now` in seconds), and client networks."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = ["RateLimiter", "client_network"]


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
