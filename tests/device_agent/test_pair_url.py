"""Pairing links, server URLs and the rule against plain text to anything but loopback."""

from __future__ import annotations

import pytest

from device_agent.core.pair_url import (
    PairUrlError,
    check_server,
    is_loopback_host,
    is_pair_link,
    normalise_code,
    pair_endpoint,
    parse_pair_link,
    websocket_url,
)


def test_a_pairing_link_yields_the_decoded_server_and_the_code() -> None:
    """The documented QR link decodes to the server's base URL and the code."""
    link = parse_pair_link("paybridge://pair?server=https%3A%2F%2Fpay.example.com&code=7KQ2M9XA")
    assert (link.server, link.code) == ("https://pay.example.com", "7KQ2M9XA")


def test_the_bridge_generated_link_for_a_loopback_server_parses() -> None:
    """The bridge's own `pair_url` for a local server (with port) round-trips."""
    link = parse_pair_link("paybridge://pair?server=http%3A%2F%2F127.0.0.1%3A18931&code=HN9DAEXE")
    assert link.server == "http://127.0.0.1:18931"


@pytest.mark.parametrize(
    "text",
    [
        "https://pay.example.com/?code=7KQ2M9XA",
        "paybridge://other?server=https%3A%2F%2Fa.example&code=7KQ2M9XA",
        "paybridge://pair?code=7KQ2M9XA",
        "paybridge://pair?server=https%3A%2F%2Fa.example",
        "paybridge://pair?server=https%3A%2F%2Fa.example&server=https%3A%2F%2Fb.example&code=7KQ2M9XA",
        "paybridge://pair?server=ftp%3A%2F%2Fa.example&code=7KQ2M9XA",
        "paybridge://pair?server=https%3A%2F%2Fa.example&code=%0A",
    ],
)
def test_malformed_pairing_links_are_refused_with_a_reason(text: str) -> None:
    """Wrong scheme or host, missing or repeated parameters, bad server or code raise PairUrlError."""
    with pytest.raises(PairUrlError):
        parse_pair_link(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("10.0.0.1", False),
        ("192.168.1.2", False),
        ("128.0.0.1", False),
        ("localhost.example.com", False),
        ("pay.example.com", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_loopback_means_127_slash_8_ipv6_loopback_and_localhost(host: str, loopback: bool) -> None:
    """Only 127.0.0.0/8, ::1 and localhost count as loopback."""
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "insecure", "expected"),
    [
        ("https://pay.example.com/", False, "https://pay.example.com"),
        ("wss://pay.example.com", False, "https://pay.example.com"),
        ("http://127.0.0.1:8080", False, "http://127.0.0.1:8080"),
        ("ws://localhost:8080/", False, "http://localhost:8080"),
        ("http://[::1]:9000", False, "http://[::1]:9000"),
        ("http://192.168.1.5:8080", True, "http://192.168.1.5:8080"),
        ("https://pay.example.com/bridge/", False, "https://pay.example.com/bridge"),
    ],
)
def test_servers_are_normalised_and_allowed(url: str, insecure: bool, expected: str) -> None:
    """TLS anywhere, plain text on loopback, or plain text anywhere with the explicit insecure flag."""
    assert check_server(url, insecure=insecure) == expected


@pytest.mark.parametrize(
    "url", ["http://pay.example.com", "ws://192.168.1.5:8080", "http://10.0.0.2", "http://127.0.0.1.nip.io"]
)
def test_plain_text_to_a_non_loopback_host_is_refused_without_insecure(url: str) -> None:
    """http:// and ws:// to anything but loopback are refused unless --insecure."""
    with pytest.raises(PairUrlError, match="insecure"):
        check_server(url)


@pytest.mark.parametrize(
    "url",
    ["ftp://a.example", "https://", "https://user:pw@a.example", "https://a.example/?x=1", "https://a.example:99999"],
)
def test_unusable_server_urls_are_refused(url: str) -> None:
    """Other schemes, no host, credentials, a query or a bad port raise PairUrlError."""
    with pytest.raises(PairUrlError):
        check_server(url, insecure=True)


@pytest.mark.parametrize(
    ("server", "ws"),
    [
        ("https://pay.example.com", "wss://pay.example.com/v1/devices/connect"),
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/devices/connect"),
        ("https://pay.example.com/bridge", "wss://pay.example.com/bridge/v1/devices/connect"),
    ],
)
def test_the_websocket_url_is_derived_from_the_server(server: str, ws: str) -> None:
    """http becomes ws, https becomes wss, and the connect path is appended to any prefix."""
    assert websocket_url(server) == ws


def test_the_pair_endpoint_is_derived_from_the_server() -> None:
    """The pairing POST goes to /v1/devices/pair under the server's base URL."""
    assert pair_endpoint("https://pay.example.com/bridge") == "https://pay.example.com/bridge/v1/devices/pair"


@pytest.mark.parametrize(("code", "ok"), [("7KQ2M9XA", True), (" 7kq2-m9xa ", True), ("ab", False), ("a/b$c", False)])
def test_codes_are_stripped_and_checked(code: str, ok: bool) -> None:
    """Codes of letters, digits, dashes and spaces pass (stripped); others are refused."""
    if ok:
        assert normalise_code(code) == code.strip()
    else:
        with pytest.raises(PairUrlError):
            normalise_code(code)


def test_links_are_told_apart_from_bare_codes() -> None:
    """A `paybridge:` prefix (any case) marks a link; a code is not one."""
    assert is_pair_link("PayBridge://pair?x") and not is_pair_link("7KQ2M9XA")
