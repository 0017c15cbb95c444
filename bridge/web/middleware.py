"""One middleware maps errors to JSON bodies `{"error": {"code", "message"}}`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from bridge.errors import ApiError, DatabaseUnavailable

__all__ = ["error_middleware", "error_response"]

log = structlog.get_logger("bridge.web")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e.status, e.code, e.message, e.headers)
    except DatabaseUnavailable as e:  # nothing was done: the client may try again
        return error_response(503, e.code, e.message, {"Retry-After": "1"})
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "payload_too_large", "request bodies are limited to 64 KiB")
    except web.HTTPException as e:
        if e.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
            return error_response(e.status, code, e.reason)
        raise
    except Exception:
        log.exception("request.failed", path=request.path, method=request.method)
        return error_response(500, "internal", "the bridge failed; nothing was changed")
