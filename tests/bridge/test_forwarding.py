"""Reading the client's address behind trusted proxies (bridge.core.forwarding)."""

from __future__ import annotations

import pytest

from bridge.config import Settings
from bridge.core.forwarding import client_address, parse_networks
from bridge.errors import ConfigError

PROXIES = parse_networks("127.0.0.1, 10.0.0.0/8, ::1")


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "client"),
    [
        # No trusted proxies: the header is ignored, whoever sends it.
        ("203.0.113.7", ["198.51.100.1"], (), "203.0.113.7"),
        # A peer that is not a trusted proxy cannot choose its address by sending the header.
        ("203.0.113.7", ["198.51.100.1"], PROXIES, "203.0.113.7"),
        # One proxy: the address it appended is the client.
        ("127.0.0.1", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        # A spoofed entry left of the real client is not believed: the rightmost untrusted hop wins.
        ("127.0.0.1", ["6.6.6.6, 198.51.100.1"], PROXIES, "198.51.100.1"),
        # Two proxies (an inner 10/8 hop): skipped from the right.
        ("127.0.0.1", ["198.51.100.1, 10.1.2.3"], PROXIES, "198.51.100.1"),
        # Several header lines count as one list, in order.
        ("127.0.0.1", ["6.6.6.6", "198.51.100.1, 10.1.2.3"], PROXIES, "198.51.100.1"),
        # Every hop trusted: the leftmost is the client.
        ("127.0.0.1", ["10.0.0.5, 10.0.0.6"], PROXIES, "10.0.0.5"),
        # Garbage in the chain: the last vouched-for hop (a proxy) stands in.
        ("127.0.0.1", ["nonsense, 10.0.0.6"], PROXIES, "10.0.0.6"),
        ("127.0.0.1", ["nonsense"], PROXIES, "127.0.0.1"),
        # No header from a trusted proxy: the proxy itself.
        ("127.0.0.1", [], PROXIES, "127.0.0.1"),
        # Ports and brackets as some proxies write them; IPv6 and IPv4-mapped peers.
        ("127.0.0.1", ["198.51.100.1:5123"], PROXIES, "198.51.100.1"),
        ("::1", ["[2001:db8::7]:443"], PROXIES, "2001:db8::7"),
        ("::ffff:127.0.0.1", ["198.51.100.1"], PROXIES, "198.51.100.1"),
        # A Unix-socket peer (no address) is itself.
        (None, ["198.51.100.1"], PROXIES, "unknown"),
    ],
)
def test_client_address(peer: str | None, header: list[str], trusted: tuple[object, ...], client: str) -> None:
    """The client is the rightmost hop not vouched for by a trusted proxy; untrusted peers are believed as is."""
    assert client_address(peer, header, trusted) == client  # type: ignore[arg-type]


def test_parse_networks_names_the_bad_entry() -> None:
    """A bad entry in the trusted-proxy list is refused with its text in the message."""
    assert parse_networks("") == ()
    assert [str(n) for n in parse_networks("10.0.0.1/8 , fd00::/8")] == ["10.0.0.0/8", "fd00::/8"]
    with pytest.raises(ValueError, match="'nope'"):
        parse_networks("127.0.0.1, nope")


def test_a_bad_trusted_proxies_setting_stops_start_up_naming_the_variable() -> None:
    """PAYBRIDGE_TRUSTED_PROXIES with a bad entry is a ConfigError that names the variable and the entry."""
    with pytest.raises(ConfigError, match=r"PAYBRIDGE_TRUSTED_PROXIES") as info:
        Settings(trusted_proxies="127.0.0.1, localhost")
    assert "'localhost'" in str(info.value)
