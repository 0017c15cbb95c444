"""`paybridge serve` as a real process: settings precedence, first-start admin token, config errors."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError


def _start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=full_env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if "listening on" in line:
            break
    return proc, lines


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=20)


def test_first_start_prints_admin_token_once_and_keeps_only_its_hash(tmp_path: Path) -> None:
    """The generated admin token is printed on the first start only; the data dir holds its hash, mode 0600."""
    proc, lines = _start(tmp_path)
    try:
        token_lines = [line for line in lines if "Admin token" in line]
        assert len(token_lines) == 1
        token = token_lines[0].rsplit(" ", 1)[1]
        url = re.search(r"http://\S+", lines[-1]).group(0)  # type: ignore[union-attr]
        req = urllib.request.Request(
            url + "/v1/merchants", data=b'{"name": "x"}', method="POST", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            key = json.loads(r.read())["api_key"]
            assert r.status == 201 and key.startswith("pbk_")
        req = urllib.request.Request(
            url + "/v1/pairing-codes", data=b"", method="POST", headers={"Authorization": f"Bearer {key}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:  # port 0: pair_url must name the bound port
            assert urllib.parse.quote(url, safe="") in json.loads(r.read())["pair_url"]
    finally:
        assert _stop(proc) == 0
    stored = tmp_path / "data" / "admin_token.sha256"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600 and token not in stored.read_text()
    proc, lines = _start(tmp_path)
    try:
        assert not any("Admin token" in line for line in lines)
    finally:
        _stop(proc)


def test_config_error_exits_2_naming_the_variable(tmp_path: Path) -> None:
    """An invalid environment setting stops the start with exit code 2 and names the variable."""
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--data-dir", str(tmp_path)],
        env={**os.environ, "PAYBRIDGE_AMOUNT_DIRECTION": "sideways"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "PAYBRIDGE_AMOUNT_DIRECTION" in out.stderr


def test_settings_precedence(tmp_path: Path) -> None:
    """Flags beat environment, environment beats the TOML file, the file beats defaults."""
    cfg = tmp_path / "p.toml"
    cfg.write_text("[paybridge]\nport = 9001\namount_steps = 3\nlate_grace = 10\n")
    s = load_settings(
        config_file=cfg, env={"PAYBRIDGE_PORT": "9002", "PAYBRIDGE_AMOUNT_STEPS": "4"}, overrides={"port": 9003}
    )
    assert (s.port, s.amount_steps, s.late_grace, s.order_ttl_default) == (9003, 4, 10, 300)


@pytest.mark.parametrize(
    ("toml", "env"),
    [("nonsense = 1\n", {}), ("port = 'x'\n", {}), ("", {"PAYBRIDGE_ADMIN_TOKEN": "short"}), ("[[[", {})],
)
def test_bad_settings_are_refused(tmp_path: Path, toml: str, env: dict[str, str]) -> None:
    """Unknown keys, wrong types, short admin tokens and broken TOML are configuration errors."""
    cfg = tmp_path / "p.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError):
        load_settings(config_file=cfg, env=env)


def test_settings_repr_hides_the_admin_token() -> None:
    """The admin token never appears in the settings' repr (and so in a log line)."""
    s = load_settings(config_file=None, env={"PAYBRIDGE_ADMIN_TOKEN": "super-secret-token-0123456789"})
    assert "super-secret" not in repr(s)
