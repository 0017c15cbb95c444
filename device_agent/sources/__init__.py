"""Where notifications come from: the only I/O the parser side of the agent sees.

| spec | source |
|---|---|
| `termux` | `termux-notification-list` polled on the phone (Termux:API) |
| `adb` / `adb:SERIAL` | `adb [-s SERIAL] shell dumpsys notification --noredact` from a computer |
| `http:HOST:PORT` | a token-protected endpoint for forwarder apps (needs the `agent-http` extra) |
| `replay:FILE` | JSON lines of termux items, once (tests and demos) |
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from device_agent.sources.adb import AdbSource
from device_agent.sources.base import ListenerHealth, NotificationSource, SourceExhausted
from device_agent.sources.replay import ReplaySource
from device_agent.sources.termux import TermuxSource

__all__ = ["SPECS", "ListenerHealth", "NotificationSource", "SourceExhausted", "open_source"]

SPECS = "termux, adb, adb:SERIAL, http:HOST:PORT or replay:FILE"


def _http(rest: str, state_dir: Path) -> NotificationSource:
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"bad http source {rest!r}: use http:HOST:PORT, e.g. http:127.0.0.1:8765")
    if importlib.util.find_spec("aiohttp") is None:
        raise ValueError("the http source needs aiohttp: pip install 'paybridge[agent-http]'")
    from device_agent.sources.http import HttpSource, load_or_create_token

    try:
        token = load_or_create_token(state_dir)
    except OSError as e:
        raise ValueError(f"cannot read or create the http token in {state_dir}: {e}") from None
    return HttpSource(host, int(port), token=token)


def open_source(
    spec: str, *, state_dir: Path, env: Mapping[str, str] | None = None, poll_interval: float = 2.0
) -> NotificationSource:
    """The source named by `spec` (see the module docstring); ValueError with a clear message otherwise."""
    environ = dict(env if env is not None else os.environ)
    kind, colon, rest = spec.strip().partition(":")
    if poll_interval <= 0:
        raise ValueError("poll_interval must be positive")
    if kind == "termux" and not colon:
        return TermuxSource(env=environ, poll_interval=poll_interval)
    if kind == "adb" and (not colon or rest):
        if rest and not rest.replace(".", "").replace(":", "").replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"bad adb serial {rest!r}: see `adb devices`")
        return AdbSource(rest or None, env=environ, poll_interval=poll_interval)
    if kind == "replay" and rest:
        path = Path(rest).expanduser()
        if not path.is_file():
            raise ValueError(f"replay file {path} does not exist")
        return ReplaySource(path)
    if kind == "http" and rest:
        return _http(rest, state_dir)
    raise ValueError(f"unknown notification source {spec!r}: use {SPECS}")
