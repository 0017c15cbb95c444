"""`run_tool`, the one place helper executables run, and `FakeTools`, the fake executables the source tests use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from device_agent.sources.base import ListenerHealth, run_tool

FIXTURES = Path(__file__).parent / "fixtures" / "sources"
FAKE_TOOL = FIXTURES / "fake_tool.py"


class FakeTools:
    """Fake helper executables in `tmp_path/bin`, each following a plan and recording its calls."""

    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.state = tmp_path / "fake-state"
        self.bin.mkdir()
        self.state.mkdir()
        self.env = {"PATH": str(self.bin), "FAKE_TOOL_STATE": str(self.state), "LANG": "C.UTF-8"}

    def plan(
        self,
        name: str,
        *,
        stdout: str | None = None,
        stdout_file: Path | None = None,
        stderr: str = "",
        exit: int = 0,
        hang: bool = False,
    ) -> None:
        """Make `name` exist (or change what it does next time it runs)."""
        wrapper = self.bin / name
        if not wrapper.exists():
            wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{FAKE_TOOL}' '{name}' \"$@\"\n")
            wrapper.chmod(0o755)
        plan: dict[str, object] = {"stderr": stderr, "exit": exit, "hang": hang}
        if stdout_file is not None:
            plan["stdout_file"] = str(stdout_file)
        else:
            plan["stdout"] = stdout or ""
        (self.state / f"{name}.plan.json").write_text(json.dumps(plan), encoding="utf-8")

    def calls(self, name: str) -> list[list[str]]:
        """The argv (without the program) of every run of `name` so far."""
        path = self.state / f"{name}.calls"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def hung_pids(self, name: str) -> list[int]:
        """The pids of the last hanging run of `name` and of the child it started."""
        return [int(p) for p in (self.state / f"{name}.pids").read_text(encoding="utf-8").split()]


def running(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def all_gone(pids: list[int]) -> bool:
    """Whether every pid is dead, allowing a killed grandchild (which we do not wait for) up to 10 s to die."""
    for _ in range(500):
        if not any(running(p) for p in pids):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_output_of_a_successful_run_is_returned(tmp_path: Path) -> None:
    """A helper that exits 0 gives its stdout and no error, and gets the arguments as given."""
    tools = FakeTools(tmp_path)
    tools.plan("helper", stdout="hello 你好")
    run = await run_tool(["helper", "a b", "--x"], env=tools.env, timeout=10)
    assert run.error is None and run.stdout.decode() == "hello 你好"
    assert tools.calls("helper") == [["a b", "--x"]]


async def test_a_missing_executable_is_not_installed(tmp_path: Path) -> None:
    """A helper not on the env's PATH is reported as not installed, not as a crash."""
    tools = FakeTools(tmp_path)
    run = await run_tool(["termux-notification-list"], env=tools.env, timeout=10)
    assert run.error == "not_installed"


async def test_a_non_zero_exit_names_the_code_and_stderr(tmp_path: Path) -> None:
    """A failing helper's exit code and the start of its stderr become the error."""
    tools = FakeTools(tmp_path)
    tools.plan("helper", stdout="partial", stderr="error: device unauthorized.\nplease check", exit=1)
    run = await run_tool(["helper"], env=tools.env, timeout=10)
    assert run.error == "exit 1: error: device unauthorized. please check"


async def test_a_hanging_helper_and_its_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    """A helper that outlives the timeout is reported as timeout and its whole process group is gone."""
    tools = FakeTools(tmp_path)
    tools.plan("helper", hang=True)
    run = await run_tool(["helper"], env=tools.env, timeout=2.0)
    assert run.error == "timeout"
    pids = tools.hung_pids("helper")
    assert len(pids) == 2 and await all_gone(pids)


async def test_cancelling_the_caller_kills_the_helper(tmp_path: Path) -> None:
    """When the agent stops while a poll is running, the helper does not stay behind."""
    tools = FakeTools(tmp_path)
    tools.plan("helper", hang=True)
    task = asyncio.create_task(run_tool(["helper"], env=tools.env, timeout=60))
    pid_file = tools.state / "helper.pids"
    while not pid_file.exists() or not pid_file.read_text().endswith("\n"):  # noqa: ASYNC110 - another process writes it
        await asyncio.sleep(0.02)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert await all_gone(tools.hung_pids("helper"))


def test_listener_health_has_the_heartbeat_shape() -> None:
    """ListenerHealth serialises to the heartbeat's listener object."""
    assert ListenerHealth(False, "termux", "timeout").to_wire() == {"ok": False, "source": "termux", "error": "timeout"}
