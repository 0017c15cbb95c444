"""The one seam for outbound webhook HTTP: a `WebhookTransport` protocol and the aiohttp implementation.

The aiohttp transport never follows redirects, reads at most 64 KiB of a response, and, unless
private targets are allowed, checks a target three times: the URL's host as the client will read
it (IDNA-normalised, so "127。0。0。1" is loopback), every address a host name resolves to (after
DNS, so a rebinding name cannot slip through), and the very address each socket is about to
connect to (a socket factory: nothing reaches `connect()` without passing the check, whatever
path the host took to become an address).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from bridge.core.ssrf import check_target, is_forbidden_address
from bridge.errors import SendFailure

__all__ = [
    "AiohttpTransport",
    "ForbiddenTarget",
    "TransportResult",
    "WebhookTransport",
    "guarded_socket",
    "parse_retry_after",
]

MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True, slots=True)
class TransportResult:
    """What one HTTP attempt came to: a status (any answer at all), or a typed `failure` and why."""

    status: int | None  # HTTP status, or None when no response came
    retry_after: float | None  # seconds, from a Retry-After header
    failure: SendFailure | None  # why no response came (None when one did)
    elapsed_ms: float
    body: bytes = b""  # the response body (at most 64 KiB): a compat notify's ack is in it
    detail: str = ""  # for people: what exactly failed ("connection refused", "10.0.0.1 is private")

    @classmethod
    def answered(
        cls, status: int, elapsed_ms: float, *, retry_after: float | None = None, body: bytes = b""
    ) -> TransportResult:
        return cls(status, retry_after, None, elapsed_ms, body)

    @classmethod
    def failed(cls, failure: SendFailure, elapsed_ms: float, detail: str = "") -> TransportResult:
        return cls(None, None, failure, elapsed_ms, b"", detail)

    @property
    def error(self) -> str | None:
        """The failure as logged and stored in `last_error` ("timeout", "network_error: …")."""
        if self.failure is None:
            return None
        return f"{self.failure}: {self.detail}" if self.detail else str(self.failure)


class WebhookTransport(Protocol):
    async def send(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float, *, method: str = "POST"
    ) -> TransportResult: ...

    async def close(self) -> None: ...


class ForbiddenTarget(OSError):
    """A webhook host resolved to an address we refuse to call."""


class _GuardedResolver(AbstractResolver):
    """Resolves with `inner`, then refuses the whole answer if any address is forbidden."""

    def __init__(self, inner: AbstractResolver) -> None:
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        bad = [r["host"] for r in results if is_forbidden_address(r["host"])]
        if bad:
            raise ForbiddenTarget(f"forbidden_target: {host} resolves to {bad[0]}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket(addr_info: AddrInfoType) -> socket.socket:
    """The connector's socket factory: refuses to open a socket towards a forbidden address."""
    family, type_, proto, _, sockaddr = addr_info
    if is_forbidden_address(str(sockaddr[0])):
        raise ForbiddenTarget(f"forbidden_target: refused to connect to {sockaddr[0]}")
    return socket.socket(family=family, type=type_, proto=proto)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


_FORBIDDEN = "forbidden_target: "  # how bridge.core.ssrf and ForbiddenTarget word a refusal


def _reason(message: str) -> str:
    """The part of a refusal after its "forbidden_target: " (the type says the rest)."""
    at = message.find(_FORBIDDEN)
    return message[at + len(_FORBIDDEN) :] if at >= 0 else message


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class AiohttpTransport:
    """One shared `aiohttp.ClientSession`; `resolver` replaces the system DNS (tests use it to point a
    public-looking name at a loopback receiver)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        user_agent: str = "Paybridge-Webhooks/0.1",
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._user_agent = user_agent
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            inner = self._resolver or DefaultResolver()
            resolver = inner if self._allow_private else _GuardedResolver(inner)
            connector = aiohttp.TCPConnector(
                resolver=resolver,
                limit=0,
                limit_per_host=0,
                ttl_dns_cache=60,
                socket_factory=None if self._allow_private else guarded_socket,
            )
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def send(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float, *, method: str = "POST"
    ) -> TransportResult:
        """POST a webhook body, or GET a compat notify URL (`method="GET"`, no body)."""
        started = time.perf_counter()

        def elapsed() -> float:
            return (time.perf_counter() - started) * 1000

        refused = check_target(url, [], allow_private=self._allow_private)
        if refused is None and not self._allow_private:
            try:  # the host exactly as aiohttp will read it
                refused = check_target(f"http://{_bracketed(URL(url).raw_host or '')}/", [], allow_private=False)
            except ValueError:
                return TransportResult.failed(SendFailure.NETWORK, elapsed(), "invalid URL")
        if refused:
            return TransportResult.failed(SendFailure.FORBIDDEN_TARGET, elapsed(), _reason(refused))
        all_headers: dict[str, Any] = {"user-agent": self._user_agent, **headers}
        if method == "POST":
            all_headers.setdefault("content-type", "application/json")
        try:
            async with asyncio.timeout(timeout):
                async with self._client().request(
                    method, url, data=body if method == "POST" else None, headers=all_headers, allow_redirects=False
                ) as resp:
                    content = await resp.content.read(MAX_RESPONSE)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
                    return TransportResult.answered(resp.status, elapsed(), retry_after=retry_after, body=content)
        except TimeoutError:
            return TransportResult.failed(SendFailure.TIMEOUT, elapsed())
        except aiohttp.ClientConnectorError as e:
            # aiohttp wraps what our socket factory raised; several refused addresses come as one
            # OSError ("Multiple exceptions: …") that only keeps the messages.
            if isinstance(e.os_error, ForbiddenTarget) or _FORBIDDEN in str(e.os_error):
                return TransportResult.failed(SendFailure.FORBIDDEN_TARGET, elapsed(), _reason(str(e.os_error)))
            return TransportResult.failed(SendFailure.NETWORK, elapsed(), str(e.os_error.strerror or e))
        except ForbiddenTarget as e:
            return TransportResult.failed(SendFailure.FORBIDDEN_TARGET, elapsed(), _reason(str(e)))
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return TransportResult.failed(SendFailure.NETWORK, elapsed(), type(e).__name__)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
