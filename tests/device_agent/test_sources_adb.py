"""The adb source: `adb [-s SERIAL] shell dumpsys notification --noredact` through a fake adb."""

from __future__ import annotations

from pathlib import Path

import pytest

from device_agent.sources.adb import AdbSource
from tests.device_agent.test_sources_tools import FIXTURES, FakeTools, all_gone


@pytest.fixture
def tools(tmp_path: Path) -> FakeTools:
    """Fake executables on a private PATH."""
    return FakeTools(tmp_path)


def source(tools: FakeTools, serial: str | None = None, timeout: float = 10.0) -> AdbSource:
    return AdbSource(serial, env=tools.env, poll_interval=0.01, timeout=timeout)


@pytest.mark.parametrize(
    ("serial", "argv"),
    [
        (None, ["shell", "dumpsys", "notification", "--noredact"]),
        ("192.168.1.20:5555", ["-s", "192.168.1.20:5555", "shell", "dumpsys", "notification", "--noredact"]),
    ],
)
async def test_adb_is_asked_for_the_unredacted_dump_of_the_right_phone(
    tools: FakeTools, serial: str | None, argv: list[str]
) -> None:
    """The serial selects the phone and --noredact is always passed."""
    tools.plan("adb", stdout_file=FIXTURES / "dumpsys_android14_empty.txt")
    await source(tools, serial).read()
    assert tools.calls("adb") == [argv]


async def test_a_noredact_dump_becomes_notifications(tools: FakeTools) -> None:
    """Payment records come back with their texts (bigText preferred) and the listener is ok."""
    tools.plan("adb", stdout_file=FIXTURES / "dumpsys_android14_noredact.txt")
    src = source(tools)
    batch = await src.read()
    assert [(n.package, n.title) for n in batch] == [
        ("com.eg.android.AlipayGphone", "你已成功收款5.00元"),
        ("com.tencent.mm", "微信支付"),
        ("com.android.systemui", "Battery saver is on"),
    ]
    assert batch[0].text == "已转入余额 收款(元)明细\n100积分兑收钱音箱，去兑换>>"
    assert src.health().to_wire() == {"ok": True, "source": "adb", "error": None}


@pytest.mark.parametrize("fixture", ["dumpsys_android14_redacted.txt", "dumpsys_android7_redacted.txt"])
async def test_a_redacted_dump_is_a_broken_listener(tools: FakeTools, fixture: str) -> None:
    """Without readable texts the listener reports `redacted` and returns nothing."""
    tools.plan("adb", stdout_file=FIXTURES / fixture)
    src = source(tools)
    assert await src.read() == []
    assert src.health().to_wire() == {"ok": False, "source": "adb", "error": "redacted"}


async def test_a_dump_without_notifications_is_an_empty_shade(tools: FakeTools) -> None:
    """A real dump with no records is ok and empty."""
    tools.plan("adb", stdout_file=FIXTURES / "dumpsys_android14_empty.txt")
    src = source(tools)
    assert await src.read() == [] and src.health().ok


@pytest.mark.parametrize(
    ("plan", "error"),
    [
        ({"stdout": ""}, "empty_output"),
        ({"stdout": "Can't find service: notification\n"}, "unrecognised_output"),
        ({"stdout": "\x00\xff garbage \x7f"}, "unrecognised_output"),
        ({"stderr": "error: device unauthorized.\n", "exit": 1}, "exit 1: error: device unauthorized."),
        ({"stderr": "adb: no devices/emulators found\n", "exit": 1}, "exit 1: adb: no devices/emulators found"),
    ],
    ids=["empty", "no-service", "garbage", "unauthorized", "no-device"],
)
async def test_failures_mark_the_listener_broken(tools: FakeTools, plan: dict[str, object], error: str) -> None:
    """Empty or unrecognised output and adb errors are reported with the reason, with an empty batch."""
    tools.plan("adb", **plan)  # type: ignore[arg-type]
    src = source(tools)
    assert await src.read() == []
    assert src.health().to_wire() == {"ok": False, "source": "adb", "error": error}


async def test_a_hanging_adb_is_a_timeout_and_is_killed(tools: FakeTools) -> None:
    """adb stuck on a disconnected phone is killed and reported as timeout."""
    tools.plan("adb", hang=True)
    src = source(tools, timeout=2.0)
    assert await src.read() == []
    assert src.health().error == "timeout"
    assert await all_gone(tools.hung_pids("adb"))


async def test_missing_adb_is_not_installed_and_recovery_is_seen(tools: FakeTools) -> None:
    """Without adb the listener says not_installed; once adb exists the next poll is ok."""
    src = source(tools)
    assert await src.read() == [] and src.health().error == "not_installed"
    tools.plan("adb", stdout_file=FIXTURES / "dumpsys_android7_noredact.txt")
    [n] = await src.read()
    assert n.title == "收钱码到账通知" and src.health().ok
