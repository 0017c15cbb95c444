"""`python -m device_agent.parse_command`: JSON lines of notifications in, one verdict per line out.

How a merchant checks why a notification was or was not recognised, and how the parsers are
tested from outside::

    echo '{"packageName": "com.tencent.mm", "content": "微信支付收款1.00元"}' | python -m device_agent.parse_command

Each input line is one termux-notification-list item (`packageName`, `title`, `content`, `when`,
`key`, …; `package` / `text` are accepted too). Each output line is
`{"kind": "payment"|"ignored"|"unrecognised", "channel", "amount_cents", "reason"}`, or
`{"kind": "error", "reason": …}` for a line that is not a notification object. Blank lines are
skipped. Exit code 0 when every line was a valid item, 1 when some were not.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from typing import TextIO

from device_agent.core.items import notification_from_item
from device_agent.core.parsers import parse

__all__ = ["main", "verdict_line"]


def verdict_line(raw: str) -> tuple[dict[str, object], bool]:
    """The verdict object for one input line, and whether the line was a valid item."""
    try:
        item = json.loads(raw)
        if not isinstance(item, dict):
            raise ValueError(f"a line must hold a JSON object, not {type(item).__name__}")
        n = notification_from_item(item)
    except (ValueError, RecursionError) as e:
        return {"kind": "error", "reason": str(e)[:200] or type(e).__name__}, False
    r = parse(n)
    return {"kind": r.kind.value, "channel": r.channel, "amount_cents": r.amount_cents, "reason": r.reason}, True


def _utf8(stream: TextIO) -> TextIO:
    """The process's own stdin/stdout switched to UTF-8 whatever the locale (Termux may have none set)."""
    if isinstance(stream, io.TextIOWrapper):
        stream.reconfigure(encoding="utf-8", errors="replace")
    return stream


def main(argv: list[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Read items from `stdin`, write verdicts to `stdout`; 0 if every line was a valid item, else 1."""
    argparse.ArgumentParser(
        prog="python -m device_agent.parse_command",
        description="Classify notifications: JSON lines (termux-notification-list items) in, verdicts out.",
    ).parse_args(argv if argv is not None else sys.argv[1:])
    src = stdin if stdin is not None else _utf8(sys.stdin)
    out = stdout if stdout is not None else _utf8(sys.stdout)
    all_ok = True
    for raw in src:
        if not raw.strip():
            continue
        verdict, ok = verdict_line(raw)
        all_ok = all_ok and ok
        out.write(json.dumps(verdict, ensure_ascii=False) + "\n")
    out.flush()
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
