"""Request parsing: size-limited JSON bodies, unknown fields rejected, every field checked."""

from __future__ import annotations

import asyncio
import builtins
import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bridge.core import codec
from bridge.errors import BadRequest, PayloadTooLarge, RequestTimeout

# Request bodies nest at most this deep (the body itself is level 1): far below what any encoder
# on the way out refuses (orjson stops at 255), so accepted input can always become an event.
MAX_DEPTH = 16

__all__ = ["MAX_DEPTH", "Body", "check_url", "query_choice", "query_int", "read_json"]


async def read_json(request: web.Request, max_body: int, timeout: float = 15.0) -> dict[str, Any]:
    """The body as a JSON object: at most `max_body` bytes, arriving within `timeout` seconds."""
    if request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(f"request bodies are limited to {max_body} bytes")
    try:
        async with asyncio.timeout(timeout):
            raw = await _read_all(request, max_body + 1)
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    if len(raw) > max_body:
        raise PayloadTooLarge(f"request bodies are limited to {max_body} bytes")
    if not raw:
        return {}
    try:
        # Strict: no NaN/Infinity, no number that overflows to infinity (1e400), no lone surrogate;
        # whatever parses here can be stored, encoded into events and signed.
        obj = codec.loads(raw)
    except ValueError:
        raise BadRequest(
            "the body is not valid UTF-8 JSON (NaN, Infinity and lone surrogates are refused)", "invalid_json"
        ) from None
    if not isinstance(obj, dict):
        raise BadRequest("the body must be a JSON object", "invalid_json")
    if _depth(obj) > MAX_DEPTH:
        raise BadRequest(f"the body may nest objects and arrays at most {MAX_DEPTH} deep", "invalid_json")
    return obj


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in `value` (an object of scalars is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level > MAX_DEPTH:  # already too deep: no need to walk the rest
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


async def _read_all(request: web.Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await request.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class Body:
    """Typed access to a JSON object that complains precisely and rejects unknown fields."""

    def __init__(self, obj: dict[builtins.str, Any], allowed: set[builtins.str]) -> None:
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise BadRequest(f"unknown field(s): {', '.join(unknown)}", "unknown_field")
        self.obj = obj

    def has(self, name: builtins.str) -> bool:
        return name in self.obj and self.obj[name] is not None

    def str(
        self, name: builtins.str, *, required: bool = True, max_len: builtins.int = 256, min_len: builtins.int = 1
    ) -> builtins.str | None:
        v = self.obj.get(name)
        if v is None:
            if required:
                raise BadRequest(f"{name} is required", "missing_field")
            return None
        if not isinstance(v, builtins.str):
            raise BadRequest(f"{name} must be a string", "invalid_field")
        if not (min_len <= len(v) <= max_len):
            raise BadRequest(f"{name} must be {min_len}..{max_len} characters", "invalid_field")
        if any(ord(c) < 32 and c not in "\t" for c in v):
            raise BadRequest(f"{name} must not contain control characters", "invalid_field")
        return v

    def int(
        self, name: builtins.str, *, required: bool = True, minimum: builtins.int = 0, maximum: builtins.int = 2**53
    ) -> builtins.int | None:
        v = self.obj.get(name)
        if v is None:
            if required:
                raise BadRequest(f"{name} is required", "missing_field")
            return None
        if isinstance(v, bool) or not isinstance(v, builtins.int):
            raise BadRequest(f"{name} must be an integer", "invalid_field")
        if not (minimum <= v <= maximum):
            raise BadRequest(f"{name} must be between {minimum} and {maximum}", "invalid_field")
        return v

    def choice(
        self, name: builtins.str, choices: tuple[builtins.str, ...], *, required: bool = True
    ) -> builtins.str | None:
        v = self.str(name, required=required, max_len=64)
        if v is not None and v not in choices:
            raise BadRequest(f"{name} must be one of {', '.join(choices)}", "invalid_field")
        return v

    def str_list(
        self, name: builtins.str, *, choices: tuple[builtins.str, ...] | None = None, max_items: builtins.int = 16
    ) -> list[builtins.str] | None:
        v = self.obj.get(name)
        if v is None:
            return None
        if not isinstance(v, list) or len(v) > max_items or not all(isinstance(x, builtins.str) for x in v):
            raise BadRequest(f"{name} must be a list of at most {max_items} strings", "invalid_field")
        if choices is not None:
            bad = [x for x in v if x not in choices]
            if bad:
                raise BadRequest(
                    f"{name}: unknown value(s) {', '.join(bad)}; allowed: {', '.join(choices)}", "invalid_field"
                )
        return list(dict.fromkeys(v))

    def object(self, name: builtins.str, *, max_bytes: builtins.int = 4096) -> dict[builtins.str, Any] | None:
        v = self.obj.get(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise BadRequest(f"{name} must be a JSON object", "invalid_field")
        if len(json.dumps(v, ensure_ascii=False).encode()) > max_bytes:
            raise BadRequest(f"{name} must be at most {max_bytes} bytes of JSON", "invalid_field")
        return v


def check_url(value: str, name: str = "url") -> str:
    """An absolute http(s) URL with a host and no credentials."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"{name} must be an absolute http:// or https:// URL", "invalid_url")
    if parts.username or parts.password:
        raise BadRequest(f"{name} must not contain credentials", "invalid_url")
    return value


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    """An optional query parameter that must be one of `choices`."""
    value = request.query.get(name)
    if value is not None and value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}", "invalid_query")
    return value


def query_int(request: web.Request, name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        v = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer", "invalid_query") from None
    if not (minimum <= v <= maximum):
        raise BadRequest(f"{name} must be between {minimum} and {maximum}", "invalid_query")
    return v
