"""The bridge under test: `python -m bridge serve` in its own process, and its CPU and memory from /proc."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "ADMIN_TOKEN",
    "BenchServer",
    "ProcSample",
    "children",
    "sample",
    "sample_one",
]

ADMIN_TOKEN = "bench-admin-token-0123456789abcdefghij"  # noqa: S105 - a throw-away local server's token
_LISTENING = re.compile(r"listening on (http://\S+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    """One reading of a process: CPU seconds (user + system), current and peak RSS in KiB."""

    cpu_s: float
    rss_kib: int
    hwm_kib: int


def sample_one(pid: int) -> ProcSample:
    """Read /proc/<pid>/stat (utime + stime) and /proc/<pid>/status (VmRSS, VmHWM)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    cpu = (int(fields[11]) + int(fields[12])) / _CLK_TCK  # fields 14 and 15 of proc(5)
    status = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        status[name] = value.strip()
    return ProcSample(cpu, int(status["VmRSS"].split()[0]), int(status["VmHWM"].split()[0]))


def children(pid: int) -> list[int]:
    """Pids of a process's live children (from /proc/<pid>/task/*/children)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    return out


def sample(pid: int) -> ProcSample:
    """A process and its live descendants (the bridge and its webhook sender), summed."""
    total = sample_one(pid)
    for child in children(pid):
        with contextlib.suppress(OSError):  # it may have just exited
            part = sample(child)
            total = ProcSample(total.cpu_s + part.cpu_s, total.rss_kib + part.rss_kib, total.hwm_kib + part.hwm_kib)
    return total


class BenchServer:
    """Starts the bridge with a fresh data dir, waits for its "listening on" line, stops it with SIGINT.

    `database_url` empty: a SQLite file in the data dir. Instances sharing a PostgreSQL schema share
    `key_file` (the secrets key every instance on one database needs)."""

    def __init__(
        self,
        workdir: Path,
        *,
        synchronous: str = "FULL",
        profile: Path | None = None,
        sender: str = "process",
        database_url: str = "",
        key_file: Path | None = None,
    ) -> None:
        self.workdir = workdir
        self.synchronous = synchronous
        self.sender = sender
        self.database_url = database_url
        self.key_file = key_file
        self.profile = profile
        self.proc: subprocess.Popen[bytes] | None = None
        self.profiler: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
        env.update(
            PAYBRIDGE_ADMIN_TOKEN=ADMIN_TOKEN,
            PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS="1",
            PAYBRIDGE_PAIRING_ATTEMPTS_PER_MINUTE="10000000",
            PAYBRIDGE_PAIRING_CODES_PER_MINUTE="10000000",
            # A phone sends a few reports a minute; the bench's devices send hundreds a second.
            PAYBRIDGE_DEVICE_MAX_FRAMES_PER_SECOND="1000000",
            PAYBRIDGE_SQLITE_SYNCHRONOUS=self.synchronous,
            PAYBRIDGE_WEBHOOK_SENDER=self.sender,
            PAYBRIDGE_LOG_FORMAT="json",
            PAYBRIDGE_LOG_LEVEL="warning",
        )
        if self.database_url:
            env["PAYBRIDGE_DATABASE_URL"] = self.database_url
        if self.key_file is not None:
            env["PAYBRIDGE_SECRETS_KEY_FILE"] = str(self.key_file)
        return env

    def start(self, timeout: float = 30.0) -> str:
        """Start the server; return its base URL."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        out = (self.workdir / "server.out").open("wb")
        err = (self.workdir / "server.err").open("wb")
        argv = [sys.executable, "-m", "bridge", "serve", "--port", "0", "--data-dir", str(data)]
        self.proc = subprocess.Popen(argv, stdout=out, stderr=err, env=self.env(), cwd=self.workdir)
        out.close()
        err.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = _LISTENING.search((self.workdir / "server.out").read_text(errors="replace"))
            if m:
                self.base_url = m.group(1)
                return self.base_url
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        tail = (self.workdir / "server.err").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the bridge did not start: {tail}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sample(self) -> ProcSample:
        return sample(self.pid)

    def profile_start(self) -> None:
        """With `profile` set: sample the server (all threads) with py-spy until `profile_stop`."""
        if self.profile is None:
            return
        argv = [
            "py-spy",
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            "200",
            "--threads",
            "--format",
            "raw",
            "--output",
            str(self.profile),
        ]
        log = (self.workdir / "py-spy.log").open("wb")
        self.profiler = subprocess.Popen(argv, stdout=log, stderr=log)
        log.close()
        time.sleep(0.5)  # py-spy attaches

    def profile_stop(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.profiler.wait(30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
        self.profiler = None

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT (a clean shutdown), then SIGKILL if it hangs."""
        self.profile_stop()
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            return None

    def __enter__(self) -> BenchServer:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
