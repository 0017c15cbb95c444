"""Which webhook targets the bridge refuses by default (SSRF). Pure."""

from __future__ import annotations

import ipaddress
import unicodedata
from urllib.parse import unquote, urlsplit

__all__ = ["check_target", "is_forbidden_address", "legacy_ipv4", "literal_address", "normalise_host"]

# Label separators IDNA (UTS #46) maps to ".": ideographic, full-width and half-width ideographic full stops.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def is_forbidden_address(ip: str) -> bool:
    """Loopback, private, link-local, multicast, reserved, unspecified, CGNAT and cloud metadata addresses."""
    try:
        addr = ipaddress.ip_address(ip)  # an IPv6 zone ("fe80::1%eth0") parses; an IPv4 one is refused below
    except ValueError:
        return True  # not an address at all: refuse rather than guess
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (
        addr in _METADATA
        or addr.is_loopback
        or addr.is_private
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
        or (isinstance(addr, ipaddress.IPv4Address) and addr in _CGNAT)
    )


def normalise_host(host: str) -> str:
    """The host name an IDNA client connects to, spelt in ASCII where it can be.

    yarl (hence aiohttp) reads a non-ASCII host through IDNA / UTS #46: NFKC ("①②⑦" and "１２７" are
    "127"), ideographic and full-width full stops are dots, letters are lower case; so
    "127。0。0。1" is 127.0.0.1. We do the same, and also decode %-escapes and drop trailing dots
    ("localhost.", "127.0.0.1." are what resolvers read as the root-anchored name): a spelling
    that normalises to a forbidden address is refused whatever a client later makes of it.
    """
    host = unquote(host).translate(_DOTS)
    host = unicodedata.normalize("NFKC", host).translate(_DOTS).lower()
    return host.rstrip(".")


def literal_address(url: str) -> str | None:
    """The host of `url` when it is an IP literal (or `localhost`) in any spelling, else None."""
    host = normalise_host(urlsplit(url).hostname or "")
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return "127.0.0.1"
    try:
        ipaddress.ip_address(host.partition("%")[0])  # "127.0.0.1%25eth0" is still 127.0.0.1
    except ValueError:
        pass
    else:
        return host
    return legacy_ipv4(host)


def legacy_ipv4(host: str) -> str | None:
    """The address of a legacy numeric IPv4 form that C resolvers accept ("2130706433", "127.1",
    "0x7f.0.0.1", "0177.0.0.1"), in dotted quads; None if `host` is not one."""
    parts = host.lower().split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part.startswith("0x"):
                values.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part[1:], 8))
            elif part.isdigit():
                values.append(int(part))
            else:
                return None
        except ValueError:
            return None
    # The last part fills every remaining byte: a.b.c.d, a.b.c(16 bits), a.b(24 bits), a(32 bits).
    last_bits = 8 * (5 - len(values))
    if any(v > 255 for v in values[:-1]) or values[-1] >= 1 << last_bits:
        return None
    number = values[-1]
    for i, v in enumerate(values[:-1]):
        number |= v << (24 - 8 * i)
    return str(ipaddress.IPv4Address(number))


def check_target(url: str, resolved: list[str], *, allow_private: bool) -> str | None:
    """Why a delivery to `url` (which resolved to `resolved`) is refused, or None if it may go."""
    if allow_private:
        return None
    literal = literal_address(url)
    for ip in ([literal] if literal else []) + resolved:
        if is_forbidden_address(ip):
            return f"forbidden_target: {ip} is a loopback, private, link-local or metadata address"
    return None
