"""termux-notification-list items (and forwarder-shaped dicts) -> `Notification`. Pure and strict.

Accepted fields, first present alias wins:

| Notification | item field(s) |
|---|---|
| package | `packageName`, `package`, `from` (SmsForwarder) |
| title | `title` |
| text | `content`, `text`, `org_content` (SmsForwarder) |
| when | `when`, `timestamp`, `time` |
| key | `key`, else `f"{package}|{id}|{tag}"`, else a digest of package, title, text and when |
| tag, group, lines | `tag`, `group`, `lines` (InboxStyle lines) |

`when` in Unix ms: an int (a value under 10**11 is taken as seconds, as some forwarders send),
a digit string, or termux's "2024-01-02 03:04:05". That string is the phone's local wall-clock
time without a zone; we read it as if it were UTC, so it is off by the phone's UTC offset. It is
only used to tell notifications apart (dedupe), never compared with other clocks. Absent, empty
or out-of-range values (termux prints "292269055-12-02 16:47:04" for Long.MAX_VALUE) become 0,
"unknown".
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import UTC, datetime

from device_agent.core.notifications import Notification

__all__ = ["MAX_LINES", "MAX_TEXT", "notification_from_item", "parse_when"]

MAX_TEXT = 4096  # the bridge refuses longer title/text (docs/protocol.md); longer is cut, not refused
MAX_LINES = 50
MAX_KEY = 512
_MAX_MS = 2**63 - 1
_SECONDS_BELOW = 10**11  # 10**11 ms is 1973; 10**11 s is the year 5138
_DATE = re.compile(
    r"(?P<y>[0-9]{4,})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})[ T]"
    r"(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.[0-9]+)?)?"
)


def parse_when(value: object) -> int:
    """A `when` field as Unix ms (see the module docstring); ValueError on a wrong type or a non-date."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError("when must be a number or a date string, not a boolean")
    if isinstance(value, float):
        if not math.isfinite(value):
            return 0
        value = int(value)
    if isinstance(value, int):
        if value <= 0 or value > _MAX_MS:
            return 0
        return value * 1000 if value < _SECONDS_BELOW else value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0
        if text.isascii() and text.isdigit():
            return parse_when(int(text))
        m = _DATE.fullmatch(text)
        if m is None:
            raise ValueError(f"when is not a date: {text[:40]!r}")
        if int(m["y"]) > 9999:
            return 0
        try:
            moment = datetime(
                int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["mi"]), int(m["s"] or 0), tzinfo=UTC
            )
        except ValueError:
            raise ValueError(f"when is not a valid date: {text[:40]!r}") from None
        return max(0, int(moment.timestamp()) * 1000)
    raise ValueError(f"when must be a number or a date string, not {type(value).__name__}")


def _string(item: dict[str, object], *names: str) -> str | None:
    """The first of `names` present and not null, which must be a string (cut to MAX_TEXT)."""
    for name in names:
        value = item.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, not {type(value).__name__}")
        return value[:MAX_TEXT]
    return None


def _lines(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError("lines must be a list of strings")
    return tuple(x[:MAX_TEXT] for x in value[:MAX_LINES])


def _ident(value: object, name: str) -> str | None:
    """An `id`, `tag` or `group`: termux prints strings, some sources numbers; both become text."""
    if value is None:
        return None
    if isinstance(value, int | str) and not isinstance(value, bool):
        return str(value)[:MAX_KEY]
    raise ValueError(f"{name} must be an integer or a string, not {type(value).__name__}")


def notification_from_item(item: dict[str, object]) -> Notification:
    """Convert one item; raise ValueError with a clear message when it is not a notification."""
    if not isinstance(item, dict):
        raise ValueError(f"an item must be a JSON object, not {type(item).__name__}")
    package = _string(item, "packageName", "package", "from")
    if not package:
        raise ValueError("packageName (or package) is required and must be a non-empty string")
    title = _string(item, "title")
    text = _string(item, "content", "text", "org_content")
    when = parse_when(next((item[k] for k in ("when", "timestamp", "time") if item.get(k) is not None), None))
    tag = _ident(item.get("tag"), "tag")
    group = _ident(item.get("group"), "group")
    lines = _lines(item.get("lines"))
    key = _string(item, "key")
    if not key:
        ident = _ident(item.get("id"), "id")
        if ident is not None:
            key = f"{package}|{ident}|{tag}"
        else:  # forwarders send neither key nor id: derive a stable key from what identifies the notification
            digest = hashlib.sha256(f"{package}\0{title}\0{text}\0{when}".encode("utf-8", "surrogatepass"))
            key = f"{package}|h:{digest.hexdigest()[:24]}"
    return Notification(
        package=package[:MAX_KEY],
        title=title,
        text=text,
        when=when,
        key=key[:MAX_KEY],
        tag=tag,
        group=group,
        lines=lines,
    )
