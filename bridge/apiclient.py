"""A small synchronous HTTP client for the operator commands (standard library `urllib` only).

Errors, classified by what the operator does next:

ClientError          base
├── ApiCallError     the bridge answered with an error body (`error.code`, `error.message`)
└── Unreachable      no answer: connection refused, timeout, DNS, not a Paybridge bridge
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bridge import __version__

__all__ = ["ApiCallError", "ApiClient", "ClientError", "Unreachable"]

MAX_RESPONSE = 8 * 1024 * 1024


class ClientError(Exception):
    """Base of the client's errors; `message` is meant for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ApiCallError(ClientError):
    """The bridge refused the request; `status`, `code` and `message` come from its error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.detail = message


class Unreachable(ClientError):
    """The bridge did not answer (or did not answer like a Paybridge bridge)."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect would resend the bearer token somewhere else


def _error_of(status: int, raw: bytes, reason: str) -> ApiCallError:
    try:
        err = json.loads(raw.decode("utf-8")).get("error", {})
        return ApiCallError(status, str(err.get("code", "http_error")), str(err.get("message", reason)))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ApiCallError(status, "http_error", reason or "the bridge refused the request")


@dataclass(frozen=True, slots=True)
class ApiClient:
    """Calls one bridge with one bearer token (which may be empty for unauthenticated routes)."""

    base_url: str
    token: str = field(default="", repr=False)
    timeout: float = 15.0

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Any:
        """Send one request; return the decoded JSON answer or raise ApiCallError / Unreachable."""
        url = self.base_url.rstrip("/") + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        if not url.startswith(("http://", "https://")):
            raise Unreachable(f"the bridge URL must start with http:// or https://, not {self.base_url!r}")
        headers = {"Accept": "application/json", "User-Agent": f"paybridge-cli/{__version__}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - checked above
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(request, timeout=self.timeout) as response:
                raw = response.read(MAX_RESPONSE)
        except urllib.error.HTTPError as e:
            raw = e.read(64 * 1024) if e.fp is not None else b""
            if 300 <= e.code < 400:
                raise Unreachable(f"{url} redirected to {e.headers.get('Location', '?')}; use that URL") from None
            raise _error_of(e.code, raw, str(e.reason)) from None
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or str(e.reason)
            raise Unreachable(f"cannot reach the bridge at {self.base_url}: {reason}") from None
        except (TimeoutError, OSError) as e:
            raise Unreachable(f"cannot reach the bridge at {self.base_url}: {e}") from None
        if not raw:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise Unreachable(f"{url} did not answer with JSON; is it a Paybridge bridge?") from None
