"""SSRF rules, pure: the address tables, legacy and Unicode host spellings (read as yarl/aiohttp read them),
and the socket factory's refusal. Fast: the mutation pass (scripts/mutation) runs bridge/core/ssrf.py
against this file."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yarl import URL

from bridge.core.ssrf import check_target, is_forbidden_address, legacy_ipv4, literal_address, normalise_host
from bridge.transport import ForbiddenTarget, guarded_socket


@pytest.mark.parametrize(
    ("ip", "forbidden"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("172.31.255.255", True),
        ("192.168.0.1", True),
        ("169.254.169.254", True),
        ("169.254.1.1", True),
        ("100.64.0.1", True),
        ("100.127.255.255", True),
        ("0.0.0.0", True),  # noqa: S104 - an address under test, nothing binds to it
        ("224.0.0.1", True),
        ("240.0.0.1", True),
        ("255.255.255.255", True),
        ("::1", True),
        ("::", True),
        ("fe80::1", True),
        ("fe80::1%eth0", True),
        ("fd00:ec2::254", True),
        ("fc00::1", True),
        ("ff02::1", True),
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("not-an-ip", True),
        ("8.8.8.8", False),
        ("100.128.0.1", False),
        ("172.32.0.1", False),
        ("93.184.216.34", False),
        ("2606:4700::1111", False),
        ("::ffff:8.8.8.8", False),
        ("4000::1", True),  # reserved IPv6 (not private): only is_reserved refuses it
        ("127.0.0.1%eth0", True),  # an IPv4 address with a zone is not an address: refused
        ("8.8.8.8%eth0", True),
        ("2606:4700::1111%eth0", False),  # an IPv6 zone is part of the address
    ],
)
def test_forbidden_addresses(ip: str, forbidden: bool) -> None:
    """Loopback, private, link-local, metadata, CGNAT, multicast, reserved, unspecified and mapped forms are refused."""
    assert is_forbidden_address(ip) is forbidden


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("10.65535", "10.0.255.255"),
        ("1.2.3", "1.2.0.3"),
        ("0", "0.0.0.0"),  # noqa: S104 - an address under test
        ("256.1", None),
        ("255.255.255.255", "255.255.255.255"),  # the 255 boundary in every position
        ("255.1", "255.0.0.1"),
        ("1.255.2", "1.255.0.2"),
        ("0xff.0xff.0xff.0xff", "255.255.255.255"),
        ("0377.1", "255.0.0.1"),
        ("1.256.1.1", None),
        ("1.1.256.1", None),
        ("1.1.1.256", None),
        ("1.2.65535", "1.2.255.255"),
        ("1.2.65536", None),
        ("1.16777215", "1.255.255.255"),
        ("1.16777216", None),
        ("4294967295", "255.255.255.255"),
        ("1.2.3.4.0", None),  # five parts are never an address
        ("1.2.3.4.5", None),
        ("08", None),
        ("0x", None),
        ("4294967296", None),
        ("example", None),
        ("cafe.example", None),
    ],
)
def test_legacy_ipv4_forms(host: str, address: str | None) -> None:
    """Numeric IPv4 spellings a C resolver accepts are read as the address they mean (as inet_aton does)."""
    assert legacy_ipv4(host) == address
    try:
        expected: str | None = socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        expected = None
    assert address == expected


@pytest.mark.parametrize(
    ("url", "resolved", "allow", "refused"),
    [
        ("https://example.com/x", ["93.184.216.34"], False, False),
        ("https://example.com/x", ["93.184.216.34", "10.0.0.1"], False, True),  # any bad answer refuses
        ("https://example.com/x", ["::1"], False, True),
        ("http://127.0.0.1/x", [], False, True),
        ("http://[::1]:8080/x", [], False, True),
        ("http://LOCALHOST/x", [], False, True),
        ("http://shop.localhost/x", [], False, True),
        ("http://2130706433/x", [], False, True),
        ("http://169.254.169.254/latest/meta-data", [], False, True),
        ("http://8.8.8.8/x", [], False, False),
        ("http://127.0.0.1/x", ["127.0.0.1"], True, False),  # PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS=1
    ],
)
def test_check_target(url: str, resolved: list[str], allow: bool, refused: bool) -> None:
    """A URL is refused for a forbidden IP literal, `localhost`, or any forbidden resolved address, unless allowed."""
    reason = check_target(url, resolved, allow_private=allow)
    assert (reason is not None) is refused
    if reason is not None:
        assert reason.startswith("forbidden_target")


def test_literal_address() -> None:
    """Only IP literals and localhost names count as literals; other names wait for DNS."""
    assert literal_address("http://[fe80::1]/") == "fe80::1"
    assert literal_address("http://[fe80::1%25eth0]/") == "fe80::1%eth0"
    assert literal_address("http://127.0.0.1%25eth0/") == "127.0.0.1%eth0"
    assert literal_address("http://127.0.0.1%25a%25b/") == "127.0.0.1%a%b"
    assert literal_address("http:///x") is None
    for url in ("http://127.0.0.1%25eth0/", "http://127.0.0.1%25a%25b/", "http://localhost.localdomain/"):
        assert check_target(url, [], allow_private=False) is not None
    assert literal_address("http://localhost:80/") == "127.0.0.1"
    assert literal_address("https://hooks.example.com/") is None


# Host spellings an IDNA client reads as a loopback, link-local or private address (issue 10, finding 1).
UNICODE_SPELLINGS = [
    ("127。0。0。1", "127.0.0.1"),  # ideographic full stops
    ("127．0．0．1", "127.0.0.1"),  # full-width full stops
    ("127｡0｡0｡1", "127.0.0.1"),  # half-width ideographic full stops
    ("①②⑦.0.0.1", "127.0.0.1"),  # circled digits
    ("１２７.0.0.1", "127.0.0.1"),  # full-width digits
    ("169。254。169。254", "169.254.169.254"),
    ("１０.0.0.5", "10.0.0.5"),
    ("ⓛⓞⓒⓐⓛⓗⓞⓢⓣ", "localhost"),
    ("LocalHost", "localhost"),
]


@pytest.mark.parametrize(("host", "client_host"), UNICODE_SPELLINGS)
def test_unicode_spellings_normalise_as_the_client_reads_them(host: str, client_host: str) -> None:
    """normalise_host agrees with yarl (what aiohttp connects to) on every spelling, and the URL is refused."""
    url = f"http://{host}:8080/x"
    assert URL(url).raw_host == client_host
    assert normalise_host(host) == client_host
    reason = check_target(url, [], allow_private=False)
    assert reason is not None and reason.startswith("forbidden_target")


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("localhost.", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("localhost.localdomain", "127.0.0.1"),
        ("LOCALHOST.LOCALDOMAIN.", "127.0.0.1"),
        ("shop.localhost.", "127.0.0.1"),
        ("%31%32%37.0.0.1", "127.0.0.1"),
        ("０x7f.1", "127.0.0.1"),
        ("example.com.", None),
        ("商店.中国", None),
        ("localhostx", None),
        ("notlocalhost", None),
    ],
)
def test_trailing_dots_escapes_and_names(host: str, address: str | None) -> None:
    """A root-anchored name ("localhost.") is the name itself; %-escapes and legacy forms are read too."""
    assert literal_address(f"http://{host}/x") == address


_DIGITS = "0123456789０１２３４５６７８９①②③④⑤⑥⑦⑧⑨⓪𝟏𝟐𝟕"
_DOTS = ".。．｡"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(_DIGITS, min_size=1, max_size=3), min_size=4, max_size=4),
    st.lists(st.sampled_from(_DOTS), min_size=3, max_size=3),
)
def test_every_dotted_spelling_yarl_reads_as_forbidden_is_refused(labels: list[str], dots: list[str]) -> None:
    """Property: whenever yarl reads a host as a forbidden IPv4 address, check_target refuses the URL."""
    host = labels[0] + dots[0] + labels[1] + dots[1] + labels[2] + dots[2] + labels[3]
    try:
        client_host = URL(f"http://{host}/").raw_host
    except ValueError:
        return
    assert client_host is not None
    try:
        ipaddress.ip_address(client_host)
    except ValueError:
        return  # yarl did not read an IP literal: DNS and the connect-time check decide
    assert normalise_host(host) == client_host
    assert (check_target(f"http://{host}/", [], allow_private=False) is not None) is is_forbidden_address(client_host)


def test_the_socket_factory_refuses_forbidden_addresses() -> None:
    """guarded_socket opens sockets to public addresses only."""
    [public] = [ai for ai in socket.getaddrinfo("93.184.216.34", 80, type=socket.SOCK_STREAM)]
    sock = guarded_socket(public)
    sock.close()
    for address in ("127.0.0.1", "::1", "169.254.169.254", "10.0.0.1"):
        info = socket.getaddrinfo(address, 80, type=socket.SOCK_STREAM)[0]
        with pytest.raises(ForbiddenTarget, match="forbidden_target"):
            guarded_socket(info)
