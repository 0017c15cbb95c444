"""Reading what shop software sends (query strings and urlencoded forms) and answering it in its own shapes."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Iterable
from urllib.parse import parse_qsl

from aiohttp import web

from bridge.errors import ApiError, BadRequest, PayloadTooLarge, RequestTimeout

__all__ = ["error_page", "merged_params", "query_params", "read_form"]

MAX_FIELDS = 64
MAX_VALUE = 4096


def _collect(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for n, (k, v) in enumerate(pairs):
        if n >= MAX_FIELDS:
            raise BadRequest(f"too many parameters (at most {MAX_FIELDS})", "too_many_parameters")
        if k in out:
            raise BadRequest(f"parameter {k[:32]!r} is given twice", "duplicate_parameter")
        if len(v) > MAX_VALUE or len(k) > 64:
            raise PayloadTooLarge(f"parameter {k[:32]!r} is too long", "parameter_too_long")
        out[k] = v
    return out


def query_params(request: web.Request) -> dict[str, str]:
    """The decoded query string (`+` and `%20` are spaces, as PHP reads them)."""
    try:
        pairs = parse_qsl(request.query_string, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the query string is not valid UTF-8", "invalid_encoding") from None
    return _collect(pairs)


async def read_form(request: web.Request, max_body: int, timeout: float) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (empty when there is none)."""
    if request.method not in ("POST", "PUT") or not request.body_exists:
        return {}
    ctype = request.content_type
    if ctype not in ("application/x-www-form-urlencoded", "application/octet-stream", ""):
        raise BadRequest("send parameters as a query string or an application/x-www-form-urlencoded form")
    if request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(f"request bodies are limited to {max_body} bytes")
    try:
        async with asyncio.timeout(timeout):
            raw = await request.content.read(max_body + 1)
            while len(raw) <= max_body:
                more = await request.content.read(max_body + 1 - len(raw))
                if not more:
                    break
                raw += more
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    if len(raw) > max_body:
        raise PayloadTooLarge(f"request bodies are limited to {max_body} bytes")
    try:
        text = raw.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form is not valid UTF-8", "invalid_encoding") from None
    return _collect(pairs)


async def merged_params(request: web.Request, max_body: int, timeout: float) -> dict[str, str]:
    """Query and form together (a name in both is refused)."""
    query = query_params(request)
    form = await read_form(request, max_body, timeout)
    both = set(query) & set(form)
    if both:
        raise BadRequest(f"parameter {sorted(both)[0][:32]!r} is given twice", "duplicate_parameter")
    return {**query, **form}


def error_page(e: ApiError) -> web.Response:
    """What a payer sees when a shop's payment link is refused: a short page, never an order."""
    message = html.escape(e.message)
    body = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>支付请求无效 / Payment request refused</title></head>"
        '<body style="font-family: sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem">'
        "<h1>支付请求无效</h1><p>Payment request refused. 请返回商户页面重试，或联系商户。"
        " Go back to the shop and try again, or contact the shop.</p>"
        f"<p><code>{html.escape(e.code)}</code>: {message}</p></body></html>"
    )
    return web.Response(status=e.status, text=body, content_type="text/html", charset="utf-8")
