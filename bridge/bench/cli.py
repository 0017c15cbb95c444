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
        description="Starts `python -m bridge serve` with a temporary durable SQLite database (or N of them on "
        "one new PostgreSQL schema: --database-url, --instances) and drives it "
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
    p.add_argument(
        "--database-url",
        default="",
        help="run the bridge on this PostgreSQL server (postgresql://...), in a new schema dropped after the run"
        " (default: a SQLite file in the temporary data dir)",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=1,
        help="end-to-end run: N `paybridge serve` processes on the one PostgreSQL schema, the devices spread"
        " over them (default 1; more than 1 needs --database-url)",
    )


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
    if not 1 <= args.instances <= 16:
        raise ValueError("--instances must be 1..16")
    postgres = args.database_url.startswith(("postgresql://", "postgres://"))
    if args.database_url and not postgres:
        raise ValueError("--database-url must be a postgresql:// URL (SQLite is the default)")
    if args.instances > 1 and not postgres:
        raise ValueError("--instances needs --database-url postgresql://... (one SQLite file has one writer)")
    if args.instances > 1 and (args.idle_devices is not None or args.orders is not None):
        raise ValueError("--instances is for the end-to-end run (not --idle-devices or --orders)")
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
    database_url, schema = "", ""
    if args.database_url:
        from bridge.store.database import scratch_schema

        database_url, schema = scratch_schema(args.database_url, "paybridge_bench_")
    servers = [
        BenchServer(
            base / f"instance{n}" if args.instances > 1 else base,
            synchronous=args.synchronous,
            profile=args.profile if n == 0 else None,
            sender=args.webhook_sender,
            database_url=database_url,
            key_file=base / "secrets.key" if database_url else None,
        )
        for n in range(args.instances)
    ]
    try:
        for n, server in enumerate(servers):
            server.start()
            where = f"schema {schema}" if schema else f"synchronous={args.synchronous}"
            log(f"bridge {n} pid {server.pid} at {server.base_url} (data in {server.workdir}, {where})")
        if args.idle_devices is not None:
            result = asyncio.run(run_idle(servers[0], args.idle_devices, args.idle_seconds, log))
            ok = result["connected_at_end"] >= args.idle_devices
        elif args.orders is not None:
            result = asyncio.run(run_orders(servers[0], args.orders, args.clients, log))
            ok = result["orders"] == args.orders
        else:
            cfg = E2EConfig(devices=args.devices, events=args.events, window=args.window, rate=args.rate)
            result = asyncio.run(run_e2e(servers, cfg, log))
            ok = result["events"] == args.devices * args.events and result["bad_signatures"] == 0
    finally:
        for server in servers:
            code = server.stop()
            if code not in (0, None):
                log(f"a bridge exited with {code}; see {server.workdir / 'server.err'}")
        if schema and not args.keep_dir:
            from bridge.store.database import drop_scratch_schema

            drop_scratch_schema(args.database_url, schema)
        if not args.keep_dir:
            shutil.rmtree(base, ignore_errors=True)
    result["database"] = "postgresql" if database_url else "sqlite"
    result["synchronous"] = args.synchronous
    result["webhook_sender"] = args.webhook_sender
    result["machine"] = machine()
    out.write(json.dumps(result) + "\n")
    out.flush()
    return 0 if ok else 1
