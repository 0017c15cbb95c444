"""`paybridge bench`: the parser, and one run that prints one JSON line on stdout (progress on stderr)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_bench_parser", "machine", "run_bench"]


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark a fresh local bridge with simulated devices (prints one JSON line)",
        description="Starts `python -m bridge serve` with a temporary durable SQLite database and drives it "
        "from this process. Default: end-to-end payments (report -> verified order.paid webhook).",
    )
    p.add_argument("--devices", type=int, default=20, help="simulated devices (default 20)")
    p.add_argument("--events", type=int, default=250, help="payments per device (default 250)")
    p.add_argument("--rate", type=float, default=0.0, help="offered events/s over all devices (default: unlimited)")
    p.add_argument("--window", type=int, default=4, help="reports in flight per device (default 4)")
    p.add_argument("--idle-devices", type=int, metavar="N", help="instead: N connected idle devices; RSS and CPU")
    p.add_argument("--idle-seconds", type=float, default=30.0, help="idle measurement length (default 30)")
    p.add_argument("--orders", type=int, metavar="N", help="instead: create N orders through the HTTP API")
    p.add_argument("--clients", type=int, default=20, help="concurrent HTTP clients for --orders (default 20)")
    p.add_argument(
        "--synchronous",
        choices=["FULL", "NORMAL"],
        default="FULL",
        help="the server's SQLite synchronous mode (default FULL: acked data survives power loss)",
    )
    p.add_argument(
        "--webhook-sender",
        choices=["process", "inline"],
        default="process",
        help="where the server makes webhook HTTP calls (default process: a child on another core)",
    )
    p.add_argument(
        "--profile", type=Path, help="sample the server with py-spy during the measured phase (raw collapsed stacks)"
    )
    p.add_argument("--keep-dir", action="store_true", help="keep the server's temporary data dir and logs")


def _check(args: argparse.Namespace) -> None:
    if args.idle_devices is not None and args.orders is not None:
        raise ValueError("--idle-devices and --orders are separate runs; pick one")
    for name in ("devices", "events", "window", "clients"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1")
    if not 1 <= args.window <= 64:
        raise ValueError("--window must be 1..64 (the bridge allows 64 reports in flight)")
    if args.rate < 0 or args.idle_seconds <= 0:
        raise ValueError("--rate must be >= 0 and --idle-seconds > 0")
    if (args.idle_devices is not None and args.idle_devices < 1) or (args.orders is not None and args.orders < 1):
        raise ValueError("--idle-devices and --orders need a positive count")
    if args.profile is not None and shutil.which("py-spy") is None:
        raise ValueError("--profile needs py-spy: pip install py-spy")


def machine() -> dict[str, Any]:
    """nproc, CPU model, RAM and Python version, for the record."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
    }


def run_bench(args: argparse.Namespace, out: TextIO, *, err: TextIO, workdir: Path | None = None) -> int:
    """Run one benchmark; print its result as one JSON line on `out`; 0 if every event completed."""
    _check(args)
    from bridge.bench.driver import E2EConfig, run_e2e, run_idle, run_orders  # heavy: only when benchmarking
    from bridge.bench.server import BenchServer

    def log(message: str) -> None:
        err.write(f"bench: {message}\n")
        err.flush()

    base = Path(tempfile.mkdtemp(prefix="paybridge-bench-", dir=workdir))
    server = BenchServer(base, synchronous=args.synchronous, profile=args.profile, sender=args.webhook_sender)
    try:
        server.start()
        log(f"bridge pid {server.pid} at {server.base_url} (data in {base}, synchronous={args.synchronous})")
        if args.idle_devices is not None:
            result = asyncio.run(run_idle(server, args.idle_devices, args.idle_seconds, log))
            ok = result["connected_at_end"] >= args.idle_devices
        elif args.orders is not None:
            result = asyncio.run(run_orders(server, args.orders, args.clients, log))
            ok = result["orders"] == args.orders
        else:
            cfg = E2EConfig(devices=args.devices, events=args.events, window=args.window, rate=args.rate)
            result = asyncio.run(run_e2e(server, cfg, log))
            ok = result["events"] == args.devices * args.events and result["bad_signatures"] == 0
    finally:
        code = server.stop()
        if code not in (0, None):
            log(f"the bridge exited with {code}; see {base / 'server.err'}")
        if not args.keep_dir:
            shutil.rmtree(base, ignore_errors=True)
    result["synchronous"] = args.synchronous
    result["webhook_sender"] = args.webhook_sender
    result["machine"] = machine()
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0 if ok else 1
