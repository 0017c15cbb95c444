"""Reading the battery through a fake `termux-battery-status`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device_agent.battery import battery_from_status, read_battery
from tests.device_agent.test_sources_tools import FIXTURES, FakeTools

TOOL = "termux-battery-status"


async def test_the_recorded_output_gives_level_and_not_charging(tmp_path: Path) -> None:
    """The published example (85 %, unplugged, discharging) reads as level 85, not charging."""
    tools = FakeTools(tmp_path)
    tools.plan(TOOL, stdout_file=FIXTURES / "battery_gotermux.json")
    assert await read_battery(tools.env) == {"level": 85, "charging": False}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"percentage": 40, "status": "CHARGING", "plugged": "PLUGGED_USB"}, {"level": 40, "charging": True}),
        ({"percentage": 100, "status": "FULL", "plugged": "PLUGGED_AC"}, {"level": 100, "charging": True}),
        ({"percentage": 99, "status": "NOT_CHARGING", "plugged": "PLUGGED_AC"}, {"level": 99, "charging": True}),
        ({"percentage": 12, "status": "DISCHARGING", "plugged": "UNPLUGGED"}, {"level": 12, "charging": False}),
        ({"percentage": 12, "temperature": 31.5, "cycle": 200}, {"level": 12, "charging": False}),
        ({"level": 50, "scale": 100}, None),
        ({"percentage": "50"}, None),
        ({"percentage": 101}, None),
        ({"percentage": True}, None),
    ],
    ids=[
        "charging",
        "full",
        "plugged-not-charging",
        "discharging",
        "new-shape",
        "no-percentage",
        "string",
        "over-100",
        "bool",
    ],
)
async def test_status_and_plug_decide_charging(tmp_path: Path, fields: dict[str, object], expected: object) -> None:
    """Charging is CHARGING or FULL or plugged in; an unusable percentage means unknown."""
    tools = FakeTools(tmp_path)
    tools.plan(TOOL, stdout=json.dumps(fields))
    assert await read_battery(tools.env) == expected


@pytest.mark.parametrize(
    "plan",
    [
        {"stdout": ""},
        {"stdout": "garbage"},
        {"stdout": "[85]"},
        {"stdout": '{"percentage": 85}', "exit": 2},
        {"hang": True},
    ],
    ids=["empty", "garbage", "array", "exit", "hang"],
)
async def test_unusable_output_is_unknown(tmp_path: Path, plan: dict[str, object]) -> None:
    """Empty, garbage, failing or hanging termux-battery-status gives None."""
    tools = FakeTools(tmp_path)
    tools.plan(TOOL, **plan)  # type: ignore[arg-type]
    assert await read_battery(tools.env, timeout=1.0) is None


async def test_without_termux_api_the_battery_is_unknown(tmp_path: Path) -> None:
    """termux-battery-status not on PATH (e.g. the adb setup) gives None."""
    assert await read_battery(FakeTools(tmp_path).env) is None


def test_a_non_object_is_unknown() -> None:
    """Only a JSON object can describe the battery."""
    assert battery_from_status(["percentage", 50]) is None
