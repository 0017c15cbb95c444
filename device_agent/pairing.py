"""Pairing: register a fresh Ed25519 public key with the bridge and remember who we are.

`POST /v1/devices/pair` goes through `urllib.request` in a worker thread (the phone has no
aiohttp). Redirects are refused rather than followed, so a `https://` server can never be
silently swapped for something else. The key and `device.json` are written only after the
bridge said yes, so a failed attempt leaves an existing pairing untouched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from device_agent import __version__
from device_agent.config import StatePaths
from device_agent.core.pair_url import (
    PairUrlError,
    check_server,
    is_pair_link,
    normalise_code,
    pair_endpoint,
    parse_pair_link,
)
from device_agent.errors import ConfigError, NetworkError, PairingRefused
from device_agent.identity import DeviceRecord, generate_key, public_key_b64, save_device, save_key
from device_agent.logs import log_event

__all__ = ["PairRequest", "pair_device", "post_json", "resolve_pair_input"]

log = logging.getLogger("device_agent.pairing")
MAX_RESPONSE = 64 * 1024


@dataclass(frozen=True, slots=True)
class PairRequest:
    """A checked pairing request: normalised server URL and code."""

    server: str
    code: str
    name: str
    channels: tuple[str, ...] = ()
    insecure: bool = False


def resolve_pair_input(
    *, server: str | None, code: str | None, link: str | None, name: str, channels: Sequence[str], insecure: bool
) -> PairRequest:
    """Combine `--server`, `--code` and a positional `paybridge://` link into one request.

    A link may come as the positional argument or as `--code`; an explicit `--server` must agree
    with the link's server. Raises ConfigError with a message meant for the user.
    """
    try:
        for candidate in (link, code):
            if candidate is not None and is_pair_link(candidate):
                parsed = parse_pair_link(candidate)
                if server is not None and check_server(server, insecure=True) != parsed.server:
                    raise ConfigError(f"--server {server} does not match the pairing link's server {parsed.server}")
                if link is not None and code is not None and candidate is link and not is_pair_link(code):
                    raise ConfigError("give either a pairing link or --code, not both")
                server, code = parsed.server, parsed.code
                break
        else:
            if link is not None:
                if code is not None:
                    raise ConfigError("give the pairing code once (as --code or as the argument)")
                code = link
        if server is None:
            raise ConfigError("no server: pass --server https://... or a paybridge://pair?... link")
        if code is None:
            raise ConfigError("no pairing code: pass --code CODE or a paybridge://pair?... link")
        checked = check_server(server, insecure=insecure)
        return PairRequest(
            server=checked,
            code=normalise_code(code),
            name=name.strip() or "phone",
            channels=tuple(channels),
            insecure=insecure,
        )
    except PairUrlError as e:
        raise ConfigError(str(e)) from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _error_body(raw: bytes) -> tuple[str | None, str | None]:
    try:
        obj = json.loads(raw.decode("utf-8"))
        err = obj.get("error", {}) if isinstance(obj, dict) else {}
        if isinstance(err, dict):
            code, message = err.get("code"), err.get("message")
            return (code if isinstance(code, str) else None, message if isinstance(message, str) else None)
    except (ValueError, UnicodeDecodeError, AttributeError):
        pass
    return None, None


def post_json(url: str, body: dict[str, Any], *, timeout: float = 20.0) -> tuple[int, dict[str, Any]]:
    """POST JSON and return (status, JSON object); PairingRefused on 4xx, NetworkError otherwise.

    Blocking; call it in a thread.
    """
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked to be http(s)
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"paybridge-agent/{__version__}"},
    )
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
            raw = response.read(MAX_RESPONSE + 1)
    except urllib.error.HTTPError as e:
        raw = e.read(MAX_RESPONSE) if e.fp is not None else b""
        code, message = _error_body(raw)
        if 300 <= e.code < 400:
            where = e.headers.get("Location", "?")
            raise NetworkError(f"the server redirected to {where}; use the final URL as --server") from None
        if e.code == 429:
            wait = e.headers.get("Retry-After")
            hint = f" (retry in {wait} s)" if wait else ""
            raise PairingRefused(
                f"too many pairing attempts{hint}: {message or 'rate limited'}", status=e.code, code=code
            ) from None
        if 400 <= e.code < 500:
            raise PairingRefused(
                f"the server refused the pairing ({e.code} {code or ''}): {message or e.reason}".replace(" )", ")"),
                status=e.code,
                code=code,
            ) from None
        raise NetworkError(f"the server failed ({e.code}): {message or e.reason}; try again") from None
    except urllib.error.URLError as e:
        reason = e.reason if isinstance(e.reason, str) else getattr(e.reason, "strerror", None) or str(e.reason)
        raise NetworkError(f"cannot reach {url}: {reason}") from None
    except (TimeoutError, OSError) as e:
        raise NetworkError(f"cannot reach {url}: {e}") from None
    if len(raw) > MAX_RESPONSE:
        raise NetworkError("the server's answer is too large")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise NetworkError(f"the server at {url} did not answer with JSON; is it a Paybridge bridge?") from None
    if not isinstance(obj, dict):
        raise NetworkError("the server's answer is not a JSON object")
    return status, obj


async def pair_device(request: PairRequest, state: StatePaths, *, now_ms: int, timeout: float = 20.0) -> DeviceRecord:
    """Generate a key, register it, then store the key and `device.json`; return the record."""
    state.ensure()
    key = generate_key()
    body: dict[str, Any] = {"code": request.code, "public_key": public_key_b64(key), "name": request.name}
    if request.channels:
        body["channels"] = list(request.channels)
    url = pair_endpoint(request.server)
    log_event(log, "pairing.request", server=request.server, name=request.name)
    _status, answer = await asyncio.to_thread(post_json, url, body, timeout=timeout)
    device_id = answer.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise NetworkError("the server's pairing answer has no device_id")
    interval = answer.get("heartbeat_interval", 30)
    record = DeviceRecord(
        device_id=device_id,
        server=request.server,
        merchant_id=str(answer.get("merchant_id") or ""),
        name=request.name,
        heartbeat_interval=interval if isinstance(interval, int) and not isinstance(interval, bool) else 30,
        paired_at=now_ms,
        insecure=request.insecure,
    )
    try:
        save_key(state.key, key)
        save_device(state, record)
    except OSError as e:
        raise ConfigError(f"paired as {device_id}, but cannot store the identity in {state.root}: {e}") from None
    log_event(log, "pairing.done", device_id=device_id, server=request.server)
    return record
