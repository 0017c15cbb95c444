"""Who the client is behind a reverse proxy: read `X-Forwarded-For` only from proxies we trust.

A proxy (nginx, Caddy) appends the address it received the request from to `X-Forwarded-For`,
so the header reads `client, proxy1, proxy2` and the TCP peer is the last proxy. Anyone can send
the header, so it is believed only hop by hop: walking from the right, each address that belongs
to a trusted proxy network vouches for the one to its left; the first address that is not a
trusted proxy is the client. With no trusted proxies (the default) the header is ignored, and a
client cannot choose its own rate-limit key by sending one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["Network", "client_address", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """`"127.0.0.1, 10.0.0.0/8, ::1"` -> networks; raise ValueError naming a bad entry."""
    out = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "203.0.113.7:51234"
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Sequence[Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address: the TCP `peer` unless it is a trusted proxy, then the rightmost address
    of the `X-Forwarded-For` header values (in the order received) that is not a trusted proxy.

    If the chain runs out (every hop trusted) the leftmost hop is the client; if a hop is not an IP
    address, the last hop that was vouched for (a proxy's own address) stands in: the limit then
    lumps that proxy's clients together rather than trusting garbage."""
    peer_ip = _ip(peer) if peer else None
    if peer_ip is None or not trusted or not _trusted(peer_ip, trusted):
        return peer or "unknown"
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    current = peer_ip
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:
            return str(current)
        current = ip
        if not _trusted(ip, trusted):
            return str(ip)
    return str(current)
