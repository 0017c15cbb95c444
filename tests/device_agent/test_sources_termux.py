"""The termux source: polling `termux-notification-list` and telling a broken listener from an empty shade."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device_agent.sources.termux import TermuxSource
from tests.device_agent.test_sources_tools import FIXTURES, FakeTools, all_gone

TOOL = "termux-notification-list"


@pytest.fixture
def tools(tmp_path: Path) -> FakeTools:
    """Fake executables on a private PATH."""
    return FakeTools(tmp_path)


def source(tools: FakeTools, timeout: float = 10.0) -> TermuxSource:
    return TermuxSource(env=tools.env, poll_interval=0.01, timeout=timeout)


async def test_a_payment_shade_becomes_notifications(tools: FakeTools) -> None:
    """Alipay and WeChat items come back with package, title, text, key and when; health is ok."""
    tools.plan(TOOL, stdout_file=FIXTURES / "termux_payment_shade.json")
    src = source(tools)
    batch = await src.read()
    by_pkg = {n.package: n for n in batch}
    alipay = by_pkg["com.eg.android.AlipayGphone"]
    assert (alipay.title, alipay.text) == ("你已成功收款5.00元", "已转入余额 100积分兑收钱音箱，去兑换>>")
    assert alipay.key == "0|com.eg.android.AlipayGphone|1234|null|10123" and alipay.when > 0
    assert by_pkg["com.tencent.mm"].text == "[2条]微信支付: 微信支付收款1,430.00元(朋友到店)"
    assert src.health().to_wire() == {"ok": True, "source": "termux", "error": None}


async def test_group_summaries_and_bad_items_are_left_out_of_the_batch(tools: FakeTools) -> None:
    """The ranker_group summary is skipped silently and the item without packageName is skipped and counted."""
    tools.plan(TOOL, stdout_file=FIXTURES / "termux_payment_shade.json")
    src = source(tools)
    batch = await src.read()
    assert [n.key for n in batch] == [
        "0|com.eg.android.AlipayGphone|1234|null|10123",
        "0|com.tencent.mm|40|null|10245",
        "0|com.termux|7|null|10180",
    ]
    assert src.skipped_items == 1 and src.health().ok


@pytest.mark.parametrize(
    ("fixture", "package", "lines"),
    [
        ("termux_issue575.json", "com.example_organisation.app_name", ("Text from the notification",)),
        ("termux_alarm_light.json", "com.google.android.deskclock", ()),
    ],
)
async def test_recorded_termux_outputs_are_read(
    tools: FakeTools, fixture: str, package: str, lines: tuple[str, ...]
) -> None:
    """Verbatim published termux-notification-list outputs parse, inbox lines included."""
    tools.plan(TOOL, stdout_file=FIXTURES / fixture)
    [n] = await source(tools).read()
    assert n.package == package and n.lines == lines


async def test_an_empty_array_is_an_empty_shade_not_a_failure(tools: FakeTools) -> None:
    """`[]` means no notifications and the listener is fine."""
    tools.plan(TOOL, stdout="[]\n")
    src = source(tools)
    assert await src.read() == []
    assert src.health().ok and src.health().error is None


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        ({"stdout": ""}, "empty_output"),
        ({"stdout": "\n  \n"}, "empty_output"),
        ({"stdout": "Error: notification access not granted", "exit": 0}, "bad_json"),
        ({"stdout": '{"packageName": "x"}'}, "bad_json"),
        ({"stdout": '[{"packageName": "com.tencent.mm", "title": "微信'}, "bad_json"),
        ({"stdout": "[]", "stderr": "boom\n", "exit": 3}, "exit 3: boom"),
    ],
    ids=["empty", "blank", "garbage", "object", "truncated", "exit"],
)
async def test_broken_output_marks_the_listener_broken(tools: FakeTools, plan: dict[str, object], error: str) -> None:
    """Empty stdout, a non-zero exit and non-JSON are a broken listener, with an empty batch."""
    tools.plan(TOOL, **plan)  # type: ignore[arg-type]
    src = source(tools)
    assert await src.read() == []
    assert src.health().to_wire() == {"ok": False, "source": "termux", "error": error}


async def test_a_hanging_command_is_a_timeout_and_is_killed(tools: FakeTools) -> None:
    """termux-notification-list hangs when the Termux:API app is missing: that is a timeout, and it is killed."""
    tools.plan(TOOL, hang=True)
    src = source(tools, timeout=2.0)
    assert await src.read() == []
    assert src.health().error == "timeout" and not src.health().ok
    assert await all_gone(tools.hung_pids(TOOL))


async def test_a_missing_command_is_not_installed(tools: FakeTools) -> None:
    """Without termux-api installed the listener says so."""
    src = source(tools)
    assert await src.read() == []
    assert src.health().error == "not_installed"


async def test_the_health_is_not_ok_before_the_first_poll(tools: FakeTools) -> None:
    """A source that never polled does not claim a working listener."""
    assert source(tools).health().ok is False


async def test_each_read_polls_again_and_health_follows_the_latest_poll(tools: FakeTools) -> None:
    """Every read runs the command anew: broken, then a fresh snapshot, then broken again."""
    src = source(tools)
    tools.plan(TOOL, stdout="")
    assert await src.read() == [] and src.health().error == "empty_output"
    tools.plan(TOOL, stdout_file=FIXTURES / "termux_alarm_light.json")
    assert [n.title for n in await src.read()] == ["Upcoming alarm"] and src.health().ok
    tools.plan(TOOL, stdout="garbage", exit=1)
    assert await src.read() == [] and src.health().error == "exit 1"
    assert len(tools.calls(TOOL)) == 3


async def test_a_read_waits_for_the_poll_interval_after_the_first(tools: FakeTools) -> None:
    """The first poll is immediate; the next one waits for the interval (cancellable meanwhile)."""
    tools.plan(TOOL, stdout="[]")
    src = TermuxSource(env=tools.env, poll_interval=3600)
    assert await src.read() == []
    second = asyncio.create_task(src.read())
    await asyncio.sleep(0.2)
    assert not second.done()
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert len(tools.calls(TOOL)) == 1
