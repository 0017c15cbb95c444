"""Pairing input: `paybridge://pair?server=…&code=…` links, server URLs and the loopback rule.

Pure: no I/O. A plain-text (`http://` / `ws://`) server is only accepted on loopback
(127.0.0.0/8, ::1, `localhost`) unless the caller explicitly allows insecure transport; the
device's reports and auth would otherwise cross the network readable by anyone on the path.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = [
    "CONNECT_PATH",
    "PAIR_PATH",
    "PairLink",
    "PairUrlError",
    "check_server",
    "is_loopback_host",
    "is_pair_link",
    "normalise_code",
    "pair_endpoint",
    "parse_pair_link",
    "websocket_url",
]

CONNECT_PATH = "/v1/devices/connect"
PAIR_PATH = "/v1/devices/pair"
_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 -]{2,38}[A-Za-z0-9]$")
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


class PairUrlError(ValueError):
    """A pairing link, server URL or code that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class PairLink:
    """What a pairing QR code carries: the bridge's base URL and the one-time code."""

    server: str
    code: str


def is_pair_link(text: str) -> bool:
    """True if `text` looks like a `paybridge://` link rather than a bare code."""
    return text.strip().lower().startswith("paybridge:")


def normalise_code(code: str) -> str:
    """A pairing code as typed or scanned, stripped; raises PairUrlError if it cannot be one."""
    code = code.strip()
    if not _CODE.match(code):
        raise PairUrlError("the pairing code must be 4 to 40 letters or digits (dashes and spaces allowed)")
    return code


def parse_pair_link(text: str) -> PairLink:
    """Parse `paybridge://pair?server=<url-encoded base URL>&code=<code>`."""
    parts = urlsplit(text.strip())
    if parts.scheme.lower() != "paybridge" or parts.netloc.lower() != "pair":
        raise PairUrlError("a pairing link looks like paybridge://pair?server=…&code=…")
    query = parse_qs(parts.query, keep_blank_values=True)
    servers, codes = query.get("server", []), query.get("code", [])
    if len(servers) != 1 or len(codes) != 1:
        raise PairUrlError("the pairing link needs exactly one server and one code")
    return PairLink(server=_normalise_server(servers[0]), code=normalise_code(codes[0]))


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost` (any case, optional trailing dot)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normalise_server(url: str) -> str:
    """The base URL as `http(s)://host[:port][/prefix]`, without a trailing slash."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise PairUrlError(f"not a valid server URL: {url!r}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise PairUrlError("the server URL must start with https:// (or http:// for a local test server)")
    if not parts.hostname:
        raise PairUrlError("the server URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise PairUrlError("the server URL must not contain a user name or password")
    if parts.query or parts.fragment:
        raise PairUrlError("the server URL must not contain a query or fragment")
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, "", ""))


def check_server(url: str, *, insecure: bool = False) -> str:
    """Normalise a server URL and enforce TLS unless the host is loopback or `insecure` is set.

    `ws://`/`wss://` are accepted as spellings of `http://`/`https://`.
    """
    server = _normalise_server(url)
    parts = urlsplit(server)
    if parts.scheme == "http" and not insecure and not is_loopback_host(parts.hostname or ""):
        raise PairUrlError(
            f"refusing unencrypted connections to {parts.hostname}: use https:// "
            "(or --insecure if you really mean plain text over the network)"
        )
    return server


def websocket_url(server: str) -> str:
    """The device websocket URL of a server: http→ws, https→wss, + /v1/devices/connect."""
    parts = urlsplit(_normalise_server(server))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return urlunsplit((scheme, parts.netloc, parts.path + CONNECT_PATH, "", ""))


def pair_endpoint(server: str) -> str:
    """The pairing endpoint of a server: + /v1/devices/pair."""
    parts = urlsplit(_normalise_server(server))
    return urlunsplit((parts.scheme, parts.netloc, parts.path + PAIR_PATH, "", ""))
