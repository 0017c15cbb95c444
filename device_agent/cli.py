"""`paybridge-agent`: pair, run, parse, status. The only module of the agent that reads os.environ.

Exit codes: 0 ok, 2 usage or configuration error, 3 the bridge refused (e.g. a wrong pairing
code), 4 network error, 5 the bridge rejected this device (close code 4401/4403; pair again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from device_agent import __version__
from device_agent.config import DEFAULT_WINDOW, AgentSettings, StatePaths, default_state_dir
from device_agent.core.backoff import BackoffPolicy
from device_agent.errors import AgentError, ConfigError
from device_agent.identity import DeviceRecord
from device_agent.logs import configure

__all__ = ["build_parser", "main", "status_report"]

EXIT_USAGE = 2


def _state_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        help="where the key, device.json and the outbox live (default: $PAYBRIDGE_AGENT_STATE_DIR, ~/.paybridge-agent)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paybridge-agent",
        description="Paybridge device agent: relays payment notifications from this phone to a bridge.",
    )
    parser.add_argument("--version", action="version", version=f"paybridge-agent {__version__}")
    parser.add_argument(
        "--log-level", default=None, help="debug, info (default), warning or error; debug logs notification texts"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    pair = sub.add_parser("pair", help="pair this phone with a bridge (once)")
    pair.add_argument("link", nargs="?", help="a paybridge://pair?server=...&code=... link (or just the code)")
    pair.add_argument("--server", help="the bridge's base URL, e.g. https://pay.example.com")
    pair.add_argument("--code", help="the pairing code (or the whole paybridge:// link)")
    pair.add_argument("--name", default=None, help="a name for this phone, shown in the bridge")
    pair.add_argument(
        "--channel",
        action="append",
        default=[],
        choices=["alipay", "wechat", "unionpay", "cashbar", "bank"],
        help="a channel this phone receives (repeatable; optional)",
    )
    pair.add_argument(
        "--insecure", action="store_true", help="allow plain http:// / ws:// to a host that is not loopback"
    )
    pair.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the bridge (default 20)")
    _state_dir_arg(pair)

    run = sub.add_parser("run", help="read notifications and deliver them to the bridge")
    run.add_argument("--source", required=True, help="termux, adb[:SERIAL], http:HOST:PORT or replay:FILE")
    run.add_argument(
        "--heartbeat-interval", type=float, default=None, help="seconds between heartbeats (default: the bridge's)"
    )
    run.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="reports in flight (default 8)")
    run.add_argument(
        "--exit-when-drained",
        action="store_true",
        help="with a finite source: exit 0 once it is exhausted and every report is acknowledged",
    )
    run.add_argument("--poll-interval", type=float, default=2.0, help="seconds between shade polls (default 2)")
    run.add_argument(
        "--max-reconnect-delay", type=float, default=60.0, help="cap of the reconnect backoff in seconds (default 60)"
    )
    _state_dir_arg(run)

    sub.add_parser("parse", help="classify notifications given as JSON lines on stdin", add_help=False)

    status = sub.add_parser("status", help="show pairing, connection and outbox state")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    _state_dir_arg(status)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    i = 0  # `parse` takes its own arguments: hand everything after it to the parser command
    while i < len(args_list) and args_list[i].startswith("-") and args_list[i] not in ("-h", "--help", "--version"):
        i += 2 if args_list[i] == "--log-level" else 1
    if i < len(args_list) and args_list[i] == "parse":
        from device_agent.parse_command import main as parse_main

        return parse_main(args_list[i + 1 :])
    args = build_parser().parse_args(args_list)
    env = os.environ
    try:
        configure(args.log_level or env.get("PAYBRIDGE_AGENT_LOG_LEVEL") or "info")
    except ValueError as e:
        print(f"paybridge-agent: {e}", file=sys.stderr)
        return EXIT_USAGE
    state = StatePaths(args.state_dir if args.state_dir is not None else default_state_dir(env))
    try:
        if args.command == "pair":
            return _pair(args, state)
        if args.command == "run":
            return _run(args, state, env)
        return _status(args, state, sys.stdout)
    except AgentError as e:
        print(f"paybridge-agent: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


def _now_ms() -> int:
    return int(time.time() * 1000)


def _pair(args: argparse.Namespace, state: StatePaths) -> int:
    from device_agent.pairing import pair_device, resolve_pair_input

    name = args.name if args.name is not None else (os.uname().nodename or "phone")
    request = resolve_pair_input(
        server=args.server,
        code=args.code,
        link=args.link,
        name=name,
        channels=args.channel,
        insecure=args.insecure,
    )
    record = asyncio.run(pair_device(request, state, now_ms=_now_ms(), timeout=args.timeout))
    print(f"Paired: device {record.device_id} with {record.server} (state in {state.root}).")
    print("Next: paybridge-agent run --source termux")
    return 0


def _run(args: argparse.Namespace, state: StatePaths, env: Mapping[str, str]) -> int:
    from device_agent.agent import hold_lock
    from device_agent.identity import load_device, load_key

    if args.max_reconnect_delay <= 0:
        raise ConfigError("--max-reconnect-delay must be positive")
    settings = AgentSettings(
        state=state,
        source=args.source,
        heartbeat_interval=args.heartbeat_interval,
        window=args.window,
        exit_when_drained=args.exit_when_drained,
        poll_interval=args.poll_interval,
        backoff=BackoffPolicy(base=min(1.0, args.max_reconnect_delay), cap=args.max_reconnect_delay),
    )
    device = load_device(state)
    key = load_key(state.key)
    state.ensure()
    with hold_lock(state.lock):
        return asyncio.run(_run_agent(settings, device, key, env))


async def _run_agent(
    settings: AgentSettings, device: DeviceRecord, key: Ed25519PrivateKey, env: Mapping[str, str]
) -> int:
    from device_agent.agent import Agent
    from device_agent.battery import read_battery
    from device_agent.errors import AuthRejected
    from device_agent.outbox import Outbox
    from device_agent.sources import open_source

    try:
        source = open_source(
            settings.source, state_dir=settings.state.root, env=dict(env), poll_interval=settings.poll_interval
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    outbox = await Outbox.open(settings.state.outbox)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        agent = Agent(
            settings=settings,
            device=device,
            key=key,
            source=source,
            outbox=outbox,
            battery=lambda: read_battery(env),
        )
        code = await agent.run(stop)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await outbox.close()
    if code == AuthRejected.exit_code:
        raise AuthRejected(agent.client.status.last_error or "the bridge rejected this device", close_code=0)
    return code


def _ago(ms: int | None, now: int) -> str:
    if ms is None:
        return "never"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))
    return f"{stamp} UTC ({max(0, now - ms) // 1000} s ago)"


def status_report(state: StatePaths) -> dict[str, Any]:
    """What `status` prints, gathered from device.json, status.json and the outbox database."""
    from device_agent.agent import lock_is_held, read_status
    from device_agent.identity import load_device
    from device_agent.outbox import read_snapshot

    if not state.root.is_dir():
        raise ConfigError(f"no agent state in {state.root} (pair first, or pass --state-dir)")
    try:
        device = load_device(state)
    except ConfigError:
        device = None
    doc = read_status(state.status) or {}
    snap = read_snapshot(state.outbox)
    running = lock_is_held(state.lock)
    connection = doc.get("connection") or {}
    acks = [t for t in (snap.last_ack_at if snap else None, doc.get("last_ack_at")) if isinstance(t, int)]
    return {
        "state_dir": str(state.root),
        "paired": device is not None,
        "device_id": device.device_id if device else None,
        "server": device.server if device else None,
        "running": running,
        "pid": doc.get("pid") if running else None,
        "connection": connection.get("state", "unknown") if running else "not running",
        "last_error": connection.get("last_error"),
        "outbox_depth": snap.depth if snap else 0,
        "last_seq": snap.last_seq if snap else 0,
        "oldest_pending_at": snap.oldest_created_at if snap else None,
        "last_ack_at": max(acks) if acks else None,
        "source": doc.get("source"),
        "listener": doc.get("listener"),
        "last_notification_at": doc.get("last_notification_at") or {},
        "status_updated_at": doc.get("updated_at"),
        "agent_version": doc.get("agent_version"),
    }


def _status(args: argparse.Namespace, state: StatePaths, out: TextIO) -> int:
    report = status_report(state)
    if args.json:
        out.write(json.dumps(report, indent=2, sort_keys=True) + "\n")
        return 0
    now = _now_ms()
    listener = report["listener"]
    if isinstance(listener, dict):
        health = "ok" if listener.get("ok") else f"NOT OK ({listener.get('error')})"
        listener_text = f"{listener.get('source')}: {health}"
    else:
        listener_text = "unknown"
    lines = [
        f"state dir:     {report['state_dir']}",
        f"device:        {report['device_id'] or 'not paired'}",
        f"server:        {report['server'] or '-'}",
        f"agent:         {'running (pid ' + str(report['pid']) + ')' if report['running'] else 'not running'}",
        f"connection:    {report['connection']}"
        + (f" (last error: {report['last_error']})" if report["last_error"] else ""),
        f"outbox depth:  {report['outbox_depth']} (last seq {report['last_seq']})",
        f"last ack:      {_ago(report['last_ack_at'], now)}",
        f"listener:      {listener_text}",
    ]
    for package, at in sorted(report["last_notification_at"].items()):
        lines.append(f"last from {package}: {_ago(at, now)}")
    out.write("\n".join(lines) + "\n")
    return 0
