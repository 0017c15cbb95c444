"""Errors of the bridge, classified by what the caller does next.

BridgeError                      base of everything we raise on purpose
├── ConfigError                  bad settings: the CLI exits with code 2
├── ApiError                     mapped to a JSON error body by the web middleware
│   ├── BadRequest        400    fix the request (`invalid_request`, `unknown_field`, …)
│   ├── Unauthorized      401    send valid credentials
│   ├── Forbidden         403    these credentials may not do this
│   ├── NotFound          404    no such thing (or not yours: we never say which)
│   ├── RequestTimeout    408    the request body came too slowly; send it again
│   ├── Conflict          409    the state does not allow it (`amount_exhausted`, …)
│   ├── PayloadTooLarge   413    send less
│   ├── RateLimited       429    slow down
│   └── Unavailable       503    try again later (database busy, disk full)
└── StoreError                   the database failed (a bug, a wrong key, a failed migration)
    └── DatabaseUnavailable      down, busy, shutting down, or a COMMIT of unknown outcome: nothing
                                 is reported done; try again later (the web middleware answers 503)

A webhook attempt that got no usable HTTP answer is not raised: the transport returns it as a
`SendFailure` in `TransportResult.failure`, and the delivery worker branches on that value:

SendFailure                      why an attempt got no HTTP answer (a StrEnum: `.retryable`, `.metric`)
├── TIMEOUT                      no answer within webhook_timeout: retried on schedule
├── NETWORK                      refused, reset, DNS, the sender child exited: retried on schedule
├── INTERNAL                     a bug or a broken secret while signing or sending: retried on schedule
└── FORBIDDEN_TARGET             the target is loopback, private or metadata: failed at once (permanent)
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ApiError",
    "BadRequest",
    "BridgeError",
    "ConfigError",
    "Conflict",
    "DatabaseUnavailable",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "RequestTimeout",
    "SendFailure",
    "StoreError",
    "Unauthorized",
    "Unavailable",
]


class BridgeError(Exception):
    """Base of all errors the bridge raises on purpose."""


class ConfigError(BridgeError):
    """A setting is missing or invalid; the message names it."""


class StoreError(BridgeError):
    """The database failed."""


class DatabaseUnavailable(StoreError):
    """The database cannot do it now (down, busy, locked, shutting down): retry later. The store raises
    it, never an HTTP error; the web middleware turns it into 503 with `code`."""

    def __init__(self, message: str, code: str = "unavailable") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ApiError(BridgeError):
    status: int = 500
    default_code: str = "internal"

    def __init__(self, message: str, code: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400
    default_code = "invalid_request"


class Unauthorized(ApiError):
    status = 401
    default_code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    default_code = "forbidden"


class NotFound(ApiError):
    status = 404
    default_code = "not_found"


class RequestTimeout(ApiError):
    status = 408
    default_code = "request_timeout"


class Conflict(ApiError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(ApiError):
    status = 413
    default_code = "payload_too_large"


class RateLimited(ApiError):
    status = 429
    default_code = "rate_limited"


class Unavailable(ApiError):
    status = 503
    default_code = "unavailable"


class SendFailure(StrEnum):
    """Why a webhook attempt got no usable HTTP answer (the value is also its metric label, except
    that INTERNAL counts as a network error)."""

    TIMEOUT = "timeout"  # no answer within the timeout
    NETWORK = "network_error"  # refused, reset, unresolvable, the sender child exited
    INTERNAL = "internal_error"  # a bug or a broken secret while signing or sending
    FORBIDDEN_TARGET = "forbidden_target"  # loopback, private or metadata address: a configuration problem

    @property
    def retryable(self) -> bool:
        """Whether sending again can help (a forbidden target stays forbidden)."""
        return self is not SendFailure.FORBIDDEN_TARGET

    @property
    def metric(self) -> str:
        """The `paybridge_webhook_attempts_total` outcome label."""
        return "network_error" if self is SendFailure.INTERNAL else self.value
