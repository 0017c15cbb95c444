"""Parse `dumpsys notification --noredact` text into Notifications. Pure.

Handles the Android 7.1 and the Android 8–15 record layouts (see
shared/device_formats/derived_dumpsys_notificationrecord_layout_from_aosp.txt):

* a record starts at a line whose text starts with `NotificationRecord(`; its header names
  `pkg=`, `id=`, `tag=` and `key=`, the body repeats `key=` on its own line;
* `when=` (Android 8+, inside `notification=`) is the app's `Notification.when`; Android 7.1 has
  none, so the post time `mCreationTimeMs=` stands in;
* extras are `name=ClassName (value)` at one indentation inside `extras={ … }`; a value ends at
  the last `)` before the next entry or the closing brace, so texts may contain parentheses and
  newlines (continuation lines are not indented); arrays print `CharSequence[] (N)` followed by
  indented `[i] line` lines;
* only the record's own extras count: the `publicNotification=` copy is the lock-screen
  substitute text and is ignored;
* without `--noredact` texts print as `String [length=N]` (Android 8+) or a bare `String`
  (7.1): such records are counted as redacted and not returned, their text is unknown.

Android's automatic group summaries (`ranker_group`) repeat their children and are skipped, as
is a second record with an already seen key (the enqueued list repeats posted records).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from device_agent.core.notifications import Notification

__all__ = ["DumpsysScan", "parse_dumpsys", "scan_dumpsys"]

_HEADER = re.compile(r"^\s*NotificationRecord\(")
_HEADER_FIELD = re.compile(r"\b(pkg|id|tag|key)=(\S+)")
_BODY_KEY = re.compile(r"^\s+key=(\S+)\s*$")
_WHEN = re.compile(r"^\s+when=(-?\d+)\s*$")
_CREATED = re.compile(r"^\s+mCreationTimeMs=(\d+)")
_GROUP_KEY = re.compile(r"^\s+groupKey=\S*?\|g:(\S+)\s*$")
_ENTRY = re.compile(r"^(?P<indent>[ \t]+)(?P<name>[\w.$-]+)=(?P<rest>.*)$")
_BOXED = re.compile(r"(?P<cls>[\w.$]+) \((?P<value>.*)\)", re.DOTALL)
_ARRAY = re.compile(r"[\w.$]+\[\] \(\d+\)")
_ARRAY_ITEM = re.compile(r"^\s+\[\d+\] ?(.*)$")
_REDACTED = re.compile(r"[\w.$]+(?: \[length=\d+\])?")
_TEXT_EXTRAS = ("android.title", "android.text", "android.bigText")
_AUTOGROUP = "ranker_group"
_MAX_WHEN = 2**63 - 1


@dataclass(frozen=True, slots=True)
class DumpsysScan:
    """What one dump held: the readable notifications, how many records, how many redacted."""

    notifications: tuple[Notification, ...]
    records: int
    redacted: int


@dataclass(frozen=True, slots=True)
class _Extras:
    values: dict[str, str]
    lines: tuple[str, ...]
    redacted: bool
    end: int  # index of the line after the closing brace


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _read_extras(lines: list[str], start: int) -> _Extras:
    """Read the entries of an `extras={` block whose first entry is lines[start]."""
    values: dict[str, str] = {}
    text_lines: tuple[str, ...] = ()
    redacted = False
    indent: int | None = None
    i = start
    while i < len(lines):
        line = lines[i]
        if line.strip() == "}" and (indent is None or _indent(line) < indent):
            return _Extras(values, text_lines, redacted, i + 1)
        m = _ENTRY.match(line)
        if m is None or (indent is not None and len(m["indent"]) != indent):
            i += 1  # not an entry (cannot happen in well-formed output): skip it
            continue
        indent = len(m["indent"])
        name = m["name"]
        j = i + 1
        while j < len(lines):
            nxt = lines[j]
            if nxt.strip() == "}" and _indent(nxt) < indent:
                break
            e = _ENTRY.match(nxt)
            if e is not None and len(e["indent"]) == indent:
                break
            j += 1
        rest = m["rest"].rstrip()
        if _ARRAY.fullmatch(rest):
            if name == "android.textLines":
                items = (_ARRAY_ITEM.match(x) for x in lines[i + 1 : j])
                text_lines = tuple(x[1] for x in items if x is not None)
        else:
            value = "\n".join([rest, *lines[i + 1 : j]]).rstrip()
            boxed = _BOXED.fullmatch(value)
            if boxed is not None:
                values[name] = boxed["value"]
            elif name in _TEXT_EXTRAS and value != "null" and _REDACTED.fullmatch(value):
                redacted = True
        i = j
    return _Extras(values, text_lines, redacted, len(lines))


def _header_fields(header: str) -> dict[str, str]:
    # Only the part before the Notification(...) text: that part holds groupKey=, sortKey= etc.
    head = header.split(": Notification(", 1)[0]
    fields: dict[str, str] = {}
    for m in _HEADER_FIELD.finditer(head):
        fields.setdefault(m[1], m[2])
    if fields.get("key", "").endswith(":"):
        fields["key"] = fields["key"][:-1]
    return fields


def _record(block: list[str]) -> tuple[Notification | None, bool]:
    """One record block → (the notification or None, whether its text was redacted)."""
    fields = _header_fields(block[0])
    package = fields.get("pkg")
    if not package:
        return None, False
    key = fields.get("key")
    body_key: str | None = None
    when: int | None = None
    created = 0
    group: str | None = None
    extras: _Extras | None = None
    in_public = False
    i = 1
    while i < len(block):
        line = block[i]
        stripped = line.strip()
        if stripped.startswith("publicNotification="):
            in_public = True
        elif stripped.startswith("stats="):
            in_public = False
        elif body_key is None and (m := _BODY_KEY.match(line)) is not None:
            body_key = key = m[1]
        elif group is None and (m := _GROUP_KEY.match(line)) is not None:
            group = m[1]
        elif (m := _CREATED.match(line)) is not None:
            created = int(m[1])
        elif not in_public and when is None and (m := _WHEN.match(line)) is not None:
            when = int(m[1])
        elif not in_public and extras is None and stripped == "extras={":
            extras = _read_extras(block, i + 1)
            i = extras.end
            continue
        i += 1
    if extras is None:
        extras = _Extras({}, (), False, 0)
    if extras.redacted:
        return None, True
    tag = fields.get("tag")
    tag = None if tag in (None, "null") else tag
    if _AUTOGROUP in (key or "") or tag == _AUTOGROUP:
        return None, False
    if when is None or not 0 < when <= _MAX_WHEN:
        when = created
    values = {k: v for k, v in extras.values.items() if v != "null"}
    return Notification(
        package=package,
        title=values.get("android.title"),
        text=values.get("android.bigText") or values.get("android.text"),
        when=when,
        key=key or f"{package}|{fields.get('id')}|{tag}",
        tag=tag,
        group=group,
        lines=extras.lines,
    ), False


def scan_dumpsys(text: str) -> DumpsysScan:
    """Every readable notification in a `dumpsys notification` dump, with record counts."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADER.match(line)]
    seen: set[str] = set()
    out: list[Notification] = []
    redacted = 0
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        notification, was_redacted = _record(lines[start:end])
        redacted += was_redacted
        if notification is not None and notification.key not in seen:
            seen.add(notification.key)
            out.append(notification)
    return DumpsysScan(tuple(out), len(starts), redacted)


def parse_dumpsys(text: str) -> list[Notification]:
    """The readable notifications of a `dumpsys notification --noredact` dump."""
    return list(scan_dumpsys(text).notifications)
