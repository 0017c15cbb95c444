"""`paybridge bench`: short runs whose JSON line is complete and sane (not that they are fast)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.bench.driver import percentile
from bridge.bench.server import sample, sample_one
from tests import pg

ROOT = Path(__file__).resolve().parents[2]


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    env["PAYBRIDGE_BENCH_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", *args], capture_output=True, text=True, timeout=100, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    assert list(tmp_path.iterdir()) == [], "the server's temporary data dir is removed"
    return dict(json.loads(lines[0]))


def ordered(result: dict[str, Any], prefix: str = "") -> bool:
    return 0 < result[f"{prefix}p50_ms"] <= result[f"{prefix}p95_ms"] <= result[f"{prefix}p99_ms"]


@pytest.mark.parametrize("rate", [None, "200"])
def test_end_to_end_run_reports_every_event(tmp_path: Path, rate: str | None) -> None:
    """2 devices x 5 events: 10 events, each with a verified order.paid webhook, ordered percentiles."""
    result = bench(tmp_path, "--devices", "2", "--events", "5", *(["--rate", rate] if rate else []))
    assert result["mode"] == "e2e" and result["devices"] == 2
    assert result["events"] == 10
    assert result["webhooks_verified"] >= 10 and result["bad_signatures"] == 0
    assert result["events_per_s"] > 0 and result["acked_per_s"] > 0
    assert ordered(result) and ordered(result, "ack_")
    assert result["ack_p50_ms"] <= result["p50_ms"]  # the ack comes before the webhook
    # CPU comes from /proc in clock ticks (10 ms): 10 events may cost less than one tick.
    assert result["server_cpu_s_per_1000_events"] >= 0 and result["server_peak_rss_mib"] > 0
    assert result["offered_rate"] == (float(rate) if rate else None)
    assert result["machine"]["nproc"] >= 1 and result["synchronous"] == "FULL"


def test_orders_run_creates_every_order(tmp_path: Path) -> None:
    """`--orders 60 --clients 4` creates 60 orders and reports a positive rate and ordered latencies."""
    result = bench(tmp_path, "--orders", "60", "--clients", "4")
    assert result["mode"] == "orders" and result["orders"] == 60 and result["clients"] == 4
    assert result["orders_per_s"] > 0 and ordered(result)
    assert result["server_cpu_s_per_1000_orders"] >= 0


def test_idle_run_keeps_every_device_connected(tmp_path: Path) -> None:
    """`--idle-devices 3` connects 3 authenticated devices and reports memory per device and idle CPU."""
    result = bench(tmp_path, "--idle-devices", "3", "--idle-seconds", "1")
    assert result["mode"] == "idle" and result["idle_devices"] == 3
    assert result["connected_at_end"] == 3
    assert result["server_rss_connected_mib"] > 0 and result["idle_cpu_util"] >= 0
    assert "server_rss_per_device_kib" in result


def test_conflicting_modes_are_a_usage_error(tmp_path: Path) -> None:
    """--orders and --idle-devices together are refused with exit code 2 before any server starts."""
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", "--orders", "5", "--idle-devices", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 2 and "pick one" in out.stderr


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0], 50, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([], 50, 0.0),
    ],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    """Percentiles are nearest-rank values of the sorted sample (empty gives 0)."""
    assert percentile(values, q) == expected


def test_server_sample_counts_live_children() -> None:
    """The bridge's CPU and memory include its webhook sender child: a parent idling while its child
    spins reads as busy."""
    spin = "import time\nend = time.process_time() + 20\nwhile time.process_time() < end: pass\n"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {spin!r}])"],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        seen = sample(parent.pid)
        while seen.cpu_s < 0.3 and time.monotonic() < deadline:
            time.sleep(0.02)
            seen = sample(parent.pid)
        assert seen.cpu_s >= 0.3  # the parent itself only waits
        assert seen.rss_kib > sample_one(parent.pid).rss_kib  # the child's memory is counted too
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(10)


def test_instances_run_spreads_devices_over_processes_on_one_postgres_schema(tmp_path: Path) -> None:
    """`--database-url postgresql://... --instances 2`: two bridge processes on one new schema run a
    tiny end-to-end bench to completion, each reports its share, and the schema is dropped after."""
    server = pg.reachable_or_skip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    env["PAYBRIDGE_BENCH_DIR"] = str(tmp_path)
    argv = ["--database-url", server, "--instances", "2", "--devices", "3", "--events", "4"]
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", *argv], capture_output=True, text=True, timeout=100, env=env, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["database"] == "postgresql" and result["instances"] == 2
    assert result["events"] == 12 and result["bad_signatures"] == 0 and ordered(result)
    per = result["per_instance"]
    assert [p["events"] for p in per] == [8, 4]  # devices 0 and 2 on the first instance, device 1 on the second
    assert all(ordered(p) and p["peak_rss_mib"] > 0 and p["cpu_s_per_1000_events"] >= 0 for p in per)
    schemas = set(re.findall(r"schema (paybridge_bench_\w+)", out.stderr))
    assert len(schemas) == 1 and out.stderr.count("bench: bridge ") == 2  # two processes, one schema
    with psycopg.connect(server, autocommit=True) as conn:
        left = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schemas.pop(),)).fetchall()
    assert left == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--instances", "2"], "--instances needs --database-url"),
        (["--database-url", "sqlite:///x.db"], "must be a postgresql:// URL"),
        (["--database-url", "postgresql://u@127.0.0.1:1/x", "--instances", "2", "--orders", "5"], "end-to-end"),
    ],
)
def test_instances_need_postgres_and_the_end_to_end_run(args: list[str], message: str) -> None:
    """Several instances without PostgreSQL, or with another mode, are refused (exit 2) before any start."""
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "bench", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert out.returncode == 2 and message in out.stderr, out.stderr
