"""`python -m device_agent.parse_command` as a real subprocess, and the item conversion it rests on."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from device_agent.core.items import MAX_TEXT, notification_from_item, parse_when
from device_agent.parse_command import main

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "notifications.jsonl"


def _run(stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "device_agent.parse_command"],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=REPO,
    )


@pytest.mark.skipif(not CORPUS.exists(), reason=f"shared corpus not found at {CORPUS} (expected beside the repo)")
def test_command_over_the_corpus() -> None:
    """One verdict line per corpus row: payments with the expected amount and channel, the rest ignored, exit 0."""
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    items = [
        json.dumps(
            {
                "packageName": r["package"],
                "title": r["title"],
                "content": r["text"],
                "when": "2024-01-02 03:04:05",
                "key": f"0|{r['package']}|{i}|null|10123",
                "id": i,
                "tag": "",
                "group": "1",
            },
            ensure_ascii=False,
        )
        for i, r in enumerate(rows)
    ]
    out = _run("\n".join(items) + "\n")
    assert out.returncode == 0, out.stderr
    verdicts = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(verdicts) == len(rows)
    for row, verdict in zip(rows, verdicts, strict=True):
        assert set(verdict) == {"kind", "channel", "amount_cents", "reason"}
        if row["expected"]["kind"] == "payment_in":
            want = {
                "kind": "payment",
                "channel": row["expected"]["channel"],
                "amount_cents": row["expected"]["amount_cents"],
            }
            assert {k: verdict[k] for k in want} == want
        else:
            assert verdict["kind"] == "ignored"


def test_command_reports_bad_lines_and_continues() -> None:
    """Bad lines get error verdicts, blank lines are skipped, later lines are still parsed, and the exit code is 1."""
    out = _run(
        "garbage\n[1, 2]\n\n"
        '{"content": "no package"}\n'
        '{"package": "com.tencent.mm", "title": "微信支付", "text": "微信支付收款1.00元"}\n'
    )
    assert out.returncode == 1
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["kind"] for x in lines] == ["error", "error", "error", "payment"]
    assert "packageName" in lines[2]["reason"]
    assert lines[3]["amount_cents"] == 100


def test_command_writes_chinese_unescaped() -> None:
    """Output is UTF-8 JSON without \\u escapes (ensure_ascii=False), read through main() with explicit streams."""
    out = io.StringIO()
    code = main([], io.StringIO('{"packageName": "com.example", "title": "你好", "content": "x"}\n'), out)
    assert code == 0
    assert json.loads(out.getvalue()) == {
        "kind": "ignored",
        "channel": None,
        "amount_cents": None,
        "reason": "not_watched",
    }
    bad = io.StringIO()
    assert main([], io.StringIO('{"packageName": 5}\n'), bad) == 1
    assert "packageName" in json.loads(bad.getvalue())["reason"]


TERMUX_ITEM: dict[str, object] = {
    "id": 13,
    "tag": "",
    "key": "0|com.google.android.deskclock|13|null|10161",
    "group": "1",
    "packageName": "com.google.android.deskclock",
    "title": "Upcoming alarm",
    "content": "Mon 08:00",
    "when": "2023-01-23 07:01:21",
}


def test_termux_item_converts() -> None:
    """A verbatim termux-notification-list item becomes a Notification, its local time read as UTC."""
    n = notification_from_item(TERMUX_ITEM)
    assert (n.package, n.title, n.text, n.key, n.tag, n.group) == (
        "com.google.android.deskclock",
        "Upcoming alarm",
        "Mon 08:00",
        "0|com.google.android.deskclock|13|null|10161",
        "",
        "1",
    )
    assert n.when == 1674457281000


def test_missing_key_gets_stable_substitutes() -> None:
    """Without a key the id and tag stand in; without an id either, a digest of the content does, the same each time."""
    with_id = {k: v for k, v in TERMUX_ITEM.items() if k != "key"}
    assert notification_from_item(with_id).key == "com.google.android.deskclock|13|"
    forwarded: dict[str, object] = {
        "from": "com.tencent.mm",
        "title": "微信支付",
        "org_content": "微信支付收款1.00元",
        "timestamp": "1700000000000",
    }
    first, second = notification_from_item(forwarded), notification_from_item(dict(forwarded))
    assert first.key == second.key and first.key.startswith("com.tencent.mm|h:")
    assert (first.text, first.when) == ("微信支付收款1.00元", 1700000000000)
    other = notification_from_item({**forwarded, "org_content": "微信支付收款2.00元"})
    assert other.key != first.key


def test_aliases_and_lines() -> None:
    """package/text aliases are accepted and InboxStyle lines are kept."""
    n = notification_from_item({"package": "com.tencent.mm", "text": "hi", "lines": ["a", "b"], "when": 5})
    assert (n.package, n.text, n.lines, n.when) == ("com.tencent.mm", "hi", ("a", "b"), 5000)


def test_long_text_is_cut() -> None:
    """Titles and texts longer than the wire limit are cut rather than refused."""
    n = notification_from_item({"packageName": "p", "title": "x" * (MAX_TEXT + 10)})
    assert n.title is not None and len(n.title) == MAX_TEXT


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({}, "packageName"),
        ({"packageName": ""}, "packageName"),
        ({"packageName": 5}, "packageName"),
        ({"packageName": "p", "title": 5}, "title"),
        ({"packageName": "p", "content": ["x"]}, "content"),
        ({"packageName": "p", "lines": "x"}, "lines"),
        ({"packageName": "p", "lines": [1]}, "lines"),
        ({"packageName": "p", "when": "yesterday"}, "when"),
        ({"packageName": "p", "when": True}, "when"),
        ({"packageName": "p", "when": [1]}, "when"),
        ({"packageName": "p", "id": 1.5}, "id"),
        ({"packageName": "p", "tag": {}}, "tag"),
    ],
)
def test_bad_items_are_refused_clearly(item: dict[str, Any], message: str) -> None:
    """Wrong types and missing packages raise ValueError naming the field."""
    with pytest.raises(ValueError, match=message):
        notification_from_item(item)


def test_a_non_object_is_refused() -> None:
    """A JSON value that is not an object raises ValueError, not AttributeError."""
    with pytest.raises(ValueError, match="object"):
        notification_from_item([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (None, 0),
        ("", 0),
        (1764206400990, 1764206400990),
        (1764206400, 1764206400000),  # seconds, as some forwarders send
        ("1764206400990", 1764206400990),
        (1764206400990.0, 1764206400990),
        ("2024-01-02 03:04:05", 1704164645000),
        ("2024-01-02T03:04:05", 1704164645000),
        ("2024-01-02 03:04", 1704164640000),
        ("292269055-12-02 16:47:04", 0),  # termux's rendering of Long.MAX_VALUE-like `when`
        (-5, 0),
        (2**70, 0),
    ],
)
def test_parse_when(value: object, ms: int) -> None:
    """`when` becomes Unix ms from ints, seconds, digit strings and termux's local date format (read as UTC)."""
    assert parse_when(value) == ms


def test_parse_when_refuses_impossible_dates() -> None:
    """A date-shaped string that is not a date is refused."""
    with pytest.raises(ValueError, match="valid date"):
        parse_when("2024-13-40 25:00:00")
