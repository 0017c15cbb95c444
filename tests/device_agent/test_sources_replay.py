"""The replay source and the `open_source` factory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_agent.sources import SourceExhausted, open_source
from device_agent.sources.adb import AdbSource
from device_agent.sources.replay import ReplaySource
from device_agent.sources.termux import TermuxSource

ALIPAY = "com.eg.android.AlipayGphone"


def item(i: int) -> str:
    return json.dumps(
        {
            "id": i,
            "tag": "",
            "key": f"0|{ALIPAY}|{i}|null|10123",
            "packageName": ALIPAY,
            "title": f"你已成功收款{i}.00元",
            "content": "已转入余额",
            "when": "2026-11-27 09:20:00",
        },
        ensure_ascii=False,
    )


async def test_lines_come_in_batches_then_the_source_is_exhausted(tmp_path: Path) -> None:
    """120 lines come as 50, 50 and 20 in file order, then SourceExhausted on every further read."""
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(item(i) for i in range(120)) + "\n", encoding="utf-8")
    src = ReplaySource(path)
    sizes, keys = [], []
    for _ in range(3):
        batch = await src.read()
        sizes.append(len(batch))
        keys += [n.key for n in batch]
    assert sizes == [50, 50, 20] and keys == [f"0|{ALIPAY}|{i}|null|10123" for i in range(120)]
    for _ in range(2):
        with pytest.raises(SourceExhausted):
            await src.read()
    assert src.health().ok


async def test_bad_lines_are_skipped_and_named_in_the_health(tmp_path: Path) -> None:
    """Garbage, a non-object and an item without package are skipped; the rest still arrives."""
    path = tmp_path / "r.jsonl"
    path.write_text(
        "\n".join([item(1), "garbage {", "", "[1]", item(2), '{"title": "no package"}', item(3)]), encoding="utf-8"
    )
    src = ReplaySource(path)
    assert [n.title for n in await src.read()] == ["你已成功收款1.00元", "你已成功收款2.00元", "你已成功收款3.00元"]
    assert src.skipped_lines == 3
    assert src.health().to_wire() == {"ok": False, "source": "replay", "error": "bad_line:6"}


async def test_an_unreadable_file_is_exhausted_with_the_reason(tmp_path: Path) -> None:
    """A file that disappeared after opening ends the replay and says why."""
    path = tmp_path / "r.jsonl"
    path.write_text(item(1), encoding="utf-8")
    src = open_source(f"replay:{path}", state_dir=tmp_path)
    path.unlink()
    with pytest.raises(SourceExhausted):
        await src.read()
    assert str(src.health().error).startswith("cannot_read")


async def test_an_empty_file_is_exhausted_at_once(tmp_path: Path) -> None:
    """Nothing to replay means SourceExhausted on the first read."""
    path = tmp_path / "r.jsonl"
    path.write_text("", encoding="utf-8")
    with pytest.raises(SourceExhausted):
        await ReplaySource(path, delay=5).read()


@pytest.mark.parametrize(
    ("spec", "kind", "argv"),
    [
        ("termux", TermuxSource, None),
        ("adb", AdbSource, ["adb", "shell", "dumpsys", "notification", "--noredact"]),
        (
            "adb:emulator-5554",
            AdbSource,
            ["adb", "-s", "emulator-5554", "shell", "dumpsys", "notification", "--noredact"],
        ),
        (
            "adb:192.168.1.20:5555",
            AdbSource,
            ["adb", "-s", "192.168.1.20:5555", "shell", "dumpsys", "notification", "--noredact"],
        ),
    ],
)
def test_specs_open_the_named_source(tmp_path: Path, spec: str, kind: type, argv: list[str] | None) -> None:
    """Each spec opens its source kind with the right command line."""
    src = open_source(spec, state_dir=tmp_path, env={"PATH": ""})
    assert isinstance(src, kind) and src.name == spec.split(":")[0]
    if argv is not None:
        assert isinstance(src, AdbSource) and src.argv == argv


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "termux:x",
        "adb:",
        "adb:bad serial;rm",
        "http:",
        "http:host",
        "http:127.0.0.1:99999",
        "http::80",
        "replay:",
        "replay:/does/not/exist.jsonl",
        "sms",
        "TERMUX",
    ],
)
def test_bad_specs_are_refused_with_a_clear_message(tmp_path: Path, spec: str) -> None:
    """Anything but the documented specs is a ValueError that names the problem."""
    with pytest.raises(ValueError, match=r"source|serial|replay file|http"):
        open_source(spec, state_dir=tmp_path)
