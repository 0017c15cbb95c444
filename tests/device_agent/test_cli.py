"""`paybridge-agent` as a user runs it: real subprocesses (`python -m device_agent`) against a real bridge."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from device_agent.config import StatePaths
from device_agent.core.parsers import parse
from device_agent.outbox import Outbox
from tests.device_agent.agent_fixtures import alipay, pair_with
from tests.harness import RunningBridge, eventually

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run `python -m device_agent ARGS` to completion."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_agent",
        *args,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "device_agent",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def pairing_code(bridge: RunningBridge) -> tuple[str, dict[str, Any]]:
    merchant = await bridge.merchant()
    status, code = await bridge.call("POST", "/v1/pairing-codes", token=merchant["api_key"])
    assert status == 201
    return merchant["api_key"], code


async def status_json(state: Path) -> dict[str, Any]:
    code, out, err = await cli("status", "--json", "--state-dir", str(state))
    assert code == 0, err
    return dict(json.loads(out))


async def test_pair_stores_a_private_key_only_the_owner_can_read(bridge: RunningBridge, tmp_path: Path) -> None:
    """`pair --server --code` registers the device, keeps the key at mode 0600 and records id and server."""
    api_key, code = await pairing_code(bridge)
    rc, out, err = await cli(
        "pair", "--server", bridge.base_url, "--code", code["code"], "--name", "redmi", "--state-dir", str(tmp_path)
    )
    assert rc == 0, err
    device = json.loads((tmp_path / "device.json").read_text())
    assert device["server"] == bridge.base_url and device["device_id"] in out
    assert stat.S_IMODE((tmp_path / "device.key").stat().st_mode) == 0o600
    assert code["code"] not in err  # the pairing code is a secret: never logged
    _, listed = await bridge.call("GET", f"/v1/devices/{device['device_id']}", token=api_key)
    assert listed["name"] == "redmi"


async def test_pair_accepts_the_qr_link_as_argument_or_code(bridge: RunningBridge, tmp_path: Path) -> None:
    """A paybridge:// link (the QR code's content) works as the positional argument and as --code."""

    def link(code: dict[str, Any]) -> str:
        # The in-process bridge's own pair_url names port 0 (it listens on an ephemeral port).
        assert code["pair_url"].startswith("paybridge://pair?server=")
        return f"paybridge://pair?server={quote(bridge.base_url, safe='')}&code={code['code']}"

    _, first = await pairing_code(bridge)
    rc, _, err = await cli("pair", link(first), "--state-dir", str(tmp_path / "a"))
    assert rc == 0, err
    _, second = await pairing_code(bridge)
    rc, _, err = await cli("pair", "--code", link(second), "--state-dir", str(tmp_path / "b"))
    assert rc == 0, err
    a = json.loads((tmp_path / "a" / "device.json").read_text())
    b = json.loads((tmp_path / "b" / "device.json").read_text())
    assert a["device_id"] != b["device_id"] and a["server"] == b["server"] == bridge.base_url


async def test_a_wrong_code_exits_3_and_keeps_no_identity(bridge: RunningBridge, tmp_path: Path) -> None:
    """A refused pairing exits 3 with the bridge's reason and writes no key or device.json."""
    rc, _, err = await cli("pair", "--server", bridge.base_url, "--code", "ZZZZZZZZ", "--state-dir", str(tmp_path))
    assert rc == 3
    assert "wrong, used or expired" in err
    assert not (tmp_path / "device.key").exists() and not (tmp_path / "device.json").exists()


async def test_an_unreachable_bridge_exits_4(tmp_path: Path) -> None:
    """Nothing listening on the server's port is a network error: exit 4."""
    rc, _, err = await cli("pair", "--server", "http://127.0.0.1:9", "--code", "7KQ2M9XA", "--state-dir", str(tmp_path))
    assert rc == 4
    assert "cannot reach" in err


async def test_plain_http_to_the_network_is_refused_without_insecure(tmp_path: Path) -> None:
    """`http://` to a non-loopback host exits 2 before any request, and names --insecure."""
    rc, _, err = await cli(
        "pair", "--server", "http://192.0.2.7:8080", "--code", "7KQ2M9XA", "--state-dir", str(tmp_path)
    )
    assert rc == 2
    assert "--insecure" in err


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    """Missing arguments, an unknown source and an unpaired state dir all exit 2 with a message."""
    assert (await cli("pair", "--state-dir", str(tmp_path)))[0] == 2
    rc, _, err = await cli("run", "--source", "replay:/nonexistent", "--state-dir", str(tmp_path))
    assert rc == 2 and "not paired" in err
    assert (await cli("run", "--state-dir", str(tmp_path)))[0] == 2
    rc, _, err = await cli("status", "--state-dir", str(tmp_path / "missing"))
    assert rc == 2 and "no agent state" in err


async def test_an_unknown_source_exits_2(bridge: RunningBridge, tmp_path: Path) -> None:
    """A paired agent given a source spec it does not know exits 2 naming the valid ones."""
    await pair_with(bridge, tmp_path)
    rc, _, err = await cli("run", "--source", "carrier-pigeon", "--state-dir", str(tmp_path))
    assert rc == 2 and "termux" in err


async def test_status_reads_the_outbox_and_device_from_the_state_dir(bridge: RunningBridge, tmp_path: Path) -> None:
    """`status` shows device, server and outbox depth of a stopped agent, in text and JSON."""
    paired = await pair_with(bridge, tmp_path)
    async with await Outbox.open(StatePaths(tmp_path).outbox) as outbox:
        batch = [(n, parse(n)) for n in (alipay(1), alipay(2))]
        await outbox.record(batch, now_ms=1)
    report = await status_json(tmp_path)
    assert report["paired"] and report["device_id"] == paired.record.device_id
    assert (report["outbox_depth"], report["last_seq"], report["running"]) == (2, 2, False)
    assert report["connection"] == "not running" and report["last_ack_at"] is None
    rc, out, _ = await cli("status", "--state-dir", str(tmp_path))
    assert rc == 0
    assert "outbox depth:  2" in out and paired.record.device_id in out and "not running" in out


async def test_parse_delegates_to_the_parser_command(tmp_path: Path) -> None:
    """`parse` reads JSON lines on stdin and prints one verdict per line."""
    line = json.dumps({"packageName": "com.tencent.mm", "title": "微信支付", "content": "微信支付收款1.00元"})
    rc, out, err = await cli("parse", stdin=(line + "\n").encode())
    assert rc == 0, err
    verdict = json.loads(out.splitlines()[0])
    assert (verdict["kind"], verdict["amount_cents"]) == ("payment", 100)


async def test_run_drains_a_replay_file_and_exits_when_drained(bridge: RunningBridge, tmp_path: Path) -> None:
    """`run --source replay:FILE --exit-when-drained` delivers the file's payments and exits 0."""
    paired = await pair_with(bridge, tmp_path / "state")
    replay = tmp_path / "shade.jsonl"
    items = [
        {"packageName": "com.eg.android.AlipayGphone", "title": "你已成功收款1.00元", "when": 1000, "id": 1},
        {"packageName": "com.android.chrome", "title": "news", "content": "5.00元", "when": 1001, "id": 2},
        {"packageName": "com.tencent.mm", "title": "微信支付", "content": "微信支付收款2.00元", "when": 1002, "id": 3},
    ]
    replay.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items))
    rc, _, err = await cli(
        "run", "--source", f"replay:{replay}", "--exit-when-drained", "--state-dir", str(paired.state.root)
    )
    assert rc == 0, err
    _, payments = await bridge.call("GET", "/v1/payments?limit=100", token=paired.api_key)
    assert sorted(p["amount"] for p in payments["data"]) == ["1.00", "2.00"]
    report = await status_json(paired.state.root)
    assert report["outbox_depth"] == 0 and report["last_ack_at"] is not None
    assert "com.tencent.mm" in report["last_notification_at"]


async def test_sigterm_stops_the_agent_cleanly(bridge: RunningBridge, tmp_path: Path) -> None:
    """A running agent (seen as running by `status`) exits 0 on SIGTERM and releases its lock."""
    paired = await pair_with(bridge, tmp_path / "state")
    replay = tmp_path / "shade.jsonl"
    replay.write_text(json.dumps({"packageName": "com.eg.android.AlipayGphone", "title": "你已成功收款3.00元"}) + "\n")
    proc = await start("run", "--source", f"replay:{replay}", "--state-dir", str(paired.state.root))
    try:
        running = await eventually(
            lambda: status_json(paired.state.root),
            lambda r: r["running"] and r["connection"] == "connected" and r["outbox_depth"] == 0 and r["last_seq"] == 1,
        )
        assert running["pid"] == proc.pid
        second = await cli("run", "--source", f"replay:{replay}", "--state-dir", str(paired.state.root))
        assert second[0] == 2 and "already running" in second[2]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "agent.stopped" in err.decode()
    report = await status_json(paired.state.root)
    assert report["running"] is False


async def test_a_revoked_device_exits_5_with_a_clear_message(bridge: RunningBridge, tmp_path: Path) -> None:
    """`run` for a device the merchant revoked stops at once with exit 5 and says to pair again."""
    paired = await pair_with(bridge, tmp_path / "state")
    status, _ = await bridge.call("DELETE", f"/v1/devices/{paired.record.device_id}", token=paired.api_key)
    assert status in (200, 204)
    replay = tmp_path / "empty.jsonl"
    replay.write_text("")
    rc, _, err = await cli("run", "--source", f"replay:{replay}", "--state-dir", str(paired.state.root))
    assert rc == 5
    assert "pair it again" in err


def test_the_package_runs_as_a_module_with_a_version() -> None:
    """`python -m device_agent --version` prints the agent version."""
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "device_agent", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    )
    assert out.stdout.startswith("paybridge-agent ")
