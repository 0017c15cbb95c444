"""`http:HOST:PORT`: a local endpoint for notification-forwarder apps (SmsForwarder and the like).

`POST /notify` with a JSON object or the same fields form-encoded:

| field | accepted names, first present wins |
|---|---|
| package | `packageName`, `package`, `from` (SmsForwarder's `[from]`) |
| title | `title` |
| text | `text`, `org_content` (SmsForwarder's raw text), `content`, `msg` (rendered templates) |
| when | `when`, `timestamp` (ms, or s); absent: the time the request arrived |
| key | `key`; absent: a digest of package, title, text and when |

Authenticated with the token kept in `<state dir>/http_token`: `Authorization: Bearer <token>`,
or a `token` query, form or JSON field. Answers 202 queued, 400 bad input (JSON
`{"error": …}`), 401 bad token, 413 body over 64 KiB, 503 queue full.

aiohttp is the optional `agent-http` extra and is imported only when the server starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from device_agent.core.items import notification_from_item
from device_agent.core.notifications import Notification
from device_agent.logs import log_event
from device_agent.sources.base import ListenerHealth

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["MAX_BODY", "HttpSource", "item_from_payload", "load_or_create_token"]

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
MAX_QUEUE = 10_000
MAX_BATCH = 100
TOKEN_FILE = "http_token"  # noqa: S105 - a file name, not a secret
_ALIASES: dict[str, tuple[str, ...]] = {
    "packageName": ("packageName", "package", "from"),
    "title": ("title",),
    "content": ("text", "org_content", "content", "msg"),
    "when": ("when", "timestamp"),
    "key": ("key",),
}


def load_or_create_token(state_dir: Path) -> str:
    """The token in `state_dir/http_token`, created (128 random bits, mode 0600) if absent."""
    path = state_dir / TOKEN_FILE
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    else:
        if token:
            return token
        raise ValueError(f"{path} is empty: delete it to have a new token made")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(16)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another process: use that one
        return load_or_create_token(state_dir)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


def item_from_payload(data: dict[str, object], *, received_ms: int) -> dict[str, object]:
    """A forwarder's fields → a termux-notification-list-shaped item for `notification_from_item`."""
    item: dict[str, object] = {}
    for field, names in _ALIASES.items():
        for name in names:
            value = data.get(name)
            if value is not None and value != "":
                item[field] = value
                break
    item.setdefault("when", received_ms)
    return item


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("token") or None


def _decode(raw: bytes, content_type: str) -> dict[str, object]:
    """The body as a dict; ValueError with a short reason when it is not one."""
    text = raw.decode("utf-8")
    if content_type == "application/x-www-form-urlencoded" or (
        content_type != "application/json" and not text.lstrip().startswith("{")
    ):
        return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text.strip())))
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return data


class HttpSource:
    """Listens on HOST:PORT; `read()` waits for posted notifications and returns them in a batch."""

    name = "http"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str,
        now_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        if not token:
            raise ValueError("the http source needs a non-empty token")
        self._host = host
        self.port = port  # the bound port once started (useful with port 0)
        self._token = token.encode("utf-8")
        self._now_ms = now_ms
        self._queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=MAX_QUEUE)
        self._runner: web.AppRunner | None = None
        self._health = ListenerHealth(False, self.name, "not_started")

    def health(self) -> ListenerHealth:
        """Ok while the server is listening."""
        return self._health

    def _authorised(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode("utf-8"), self._token)

    async def _notify(self, request: web.Request) -> web.Response:
        from aiohttp import web

        def error(status: int, message: str) -> web.Response:
            return web.json_response({"error": message}, status=status)

        if request.content_length is not None and request.content_length > MAX_BODY:
            return error(413, "body over 64 KiB")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return error(413, "body over 64 KiB")
        data: dict[str, object] | None = None
        problem = ""
        try:
            data = _decode(raw, request.content_type)
        except (ValueError, RecursionError) as e:
            problem = f"bad body: {str(e)[:100]}"
        given = _bearer(request)
        if given is None and data is not None and isinstance(data.get("token"), str):
            given = str(data["token"])
        if not self._authorised(given):
            log_event(log, "http.unauthorised", level=logging.WARNING, remote=request.remote)
            return error(401, "missing or wrong token")
        if data is None:
            return error(400, problem)
        try:
            notification = notification_from_item(item_from_payload(data, received_ms=self._now_ms()))
        except ValueError as e:
            return error(400, str(e))
        try:
            self._queue.put_nowait(notification)
        except asyncio.QueueFull:
            return error(503, "queue full, retry later")
        log_event(log, "http.queued", level=logging.DEBUG, package=notification.package)
        return web.json_response({"queued": True, "key": notification.key}, status=202)

    async def start(self) -> None:
        """Bind and listen (idempotent); OSError when the address cannot be bound."""
        if self._runner is not None:
            return
        from aiohttp import web  # the optional dependency, needed by this source only

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/notify", self._notify)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self.port).start()
        except OSError as e:
            await runner.cleanup()
            self._health = ListenerHealth(False, self.name, f"cannot_listen: {e.strerror or e}")
            raise
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self.port = int(address[1])
                break
        self._health = ListenerHealth(True, self.name, None)
        log_event(log, "http.listening", host=self._host, port=self.port)

    async def read(self) -> list[Notification]:
        """Wait for at least one posted notification; return all queued (up to MAX_BATCH)."""
        await self.start()
        batch = [await self._queue.get()]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def close(self) -> None:
        """Stop listening (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        self._health = ListenerHealth(False, self.name, "stopped")
