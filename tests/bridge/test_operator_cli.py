"""The operator commands against a real bridge process, run as `python -m bridge ...` subprocesses."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bridge.operator_cli import table

ADMIN = "operator-test-admin-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m bridge serve --port 0` with a fresh data dir; its port parsed from the "listening on" line."""
    tmp = tmp_path_factory.mktemp("operator")
    err = (tmp / "server.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--port", "0", "--data-dir", str(tmp / "data")],
        stdout=subprocess.PIPE,
        stderr=err,
        env=_env(PAYBRIDGE_ADMIN_TOKEN=ADMIN, PAYBRIDGE_LOG_FORMAT="json"),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    url = ""
    deadline = time.monotonic() + 30
    while not url and time.monotonic() < deadline:
        line = proc.stdout.readline().decode()
        if not line:
            break
        m = re.search(r"listening on (http://\S+)", line)
        url = m.group(1) if m else ""
    assert url, (tmp / "server.err").read_text()
    try:
        yield Server(url, proc)
    finally:
        proc.terminate()
        proc.wait(15)
        err.close()


def paybridge(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args], capture_output=True, text=True, env=_env(**env), timeout=60, cwd=ROOT
    )


def api(server: Server, method: str, path: str, token: str = "", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def merchant(server: Server, name: str = "shop") -> dict[str, Any]:
    out = paybridge("merchant", "create", name, "--json", "--url", server.url, "--token", ADMIN)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_merchant_create_prints_the_credentials_once(server: Server) -> None:
    """`merchant create` with the admin token from the environment prints id, API key and webhook secret."""
    out = paybridge("merchant", "create", "Noodle shop", PAYBRIDGE_URL=server.url, PAYBRIDGE_ADMIN_TOKEN=ADMIN)
    assert out.returncode == 0, out.stderr
    assert re.search(r"id:\s+mch_\w+", out.stdout)
    assert re.search(r"API key:\s+\S{20,}", out.stdout)
    assert re.search(r"webhook secret:\s+whsec_\S+", out.stdout)
    assert "shown once" in out.stdout


def test_merchant_create_json_is_the_api_answer(server: Server) -> None:
    """`--json` prints the API's object, whose API key then works for the merchant API."""
    m = merchant(server, "json shop")
    assert set(m) >= {"id", "name", "api_key", "webhook_secret"} and m["name"] == "json shop"
    assert api(server, "GET", "/v1/orders", m["api_key"])["data"] == []


def test_a_wrong_token_prints_the_api_error_and_exits_1(server: Server) -> None:
    """The bridge's error code and message are shown and the exit code is 1."""
    out = paybridge("merchant", "create", "x", "--url", server.url, "--token", "not-the-admin-token-at-all")
    assert out.returncode == 1
    assert "401 unauthorized" in out.stderr and "admin token" in out.stderr


def test_a_missing_token_is_a_usage_error(server: Server) -> None:
    """Without --token or the variable the command says what to set and exits 2."""
    out = paybridge("merchant", "create", "x", "--url", server.url)
    assert out.returncode == 2
    assert "PAYBRIDGE_ADMIN_TOKEN" in out.stderr


def test_an_unreachable_bridge_exits_4() -> None:
    """Connection refused is a network error (exit 4) naming the URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    out = paybridge("devices", "--url", f"http://127.0.0.1:{port}", "--token", ADMIN)
    assert out.returncode == 4
    assert f"127.0.0.1:{port}" in out.stderr and "refused" in out.stderr.lower()


def test_pair_code_prints_the_code_link_and_a_qr_code(server: Server) -> None:
    """`pair-code` with the merchant key shows the code, its expiry, the paybridge:// link and a terminal QR."""
    m = merchant(server)
    out = paybridge("pair-code", "--merchant", m["id"], "--url", server.url, PAYBRIDGE_API_KEY=m["api_key"])
    assert out.returncode == 0, out.stderr
    code = re.search(r"Pairing code for merchant \S+: (\w+)", out.stdout)
    assert code is not None
    assert f"code={code.group(1)}" in out.stdout and "paybridge://pair?server=" in out.stdout
    assert "expires" in out.stdout
    assert sum(line.count("█") for line in out.stdout.splitlines()) > 100  # the QR code's blocks


def test_pair_code_json_gives_a_code_that_pairs(server: Server) -> None:
    """The code from `pair-code --json` pairs a device through the API."""
    m = merchant(server)
    out = paybridge("pair-code", "--json", "--url", server.url, "--api-key", m["api_key"])
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert set(answer) >= {"code", "expires_at", "pair_url"}
    device = _pair(server, answer["code"], "till phone")
    assert device["merchant_id"] == m["id"]


def test_pair_code_refuses_a_key_of_another_merchant(server: Server) -> None:
    """`--merchant` names another merchant than the key's own (GET /v1/me says whose it is): exit 2."""
    m = merchant(server)
    out = paybridge("pair-code", "--merchant", "mch_someoneelse", "--url", server.url, "--api-key", m["api_key"])
    assert out.returncode == 2
    assert m["id"] in out.stderr
    ok = paybridge("pair-code", "--merchant", m["id"], "--url", server.url, "--api-key", m["api_key"], "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["code"]


def test_pair_code_with_the_admin_token_is_refused(server: Server) -> None:
    """Pairing codes belong to a merchant: the admin token gets the API's 401 (exit 1)."""
    out = paybridge("pair-code", "--url", server.url, "--token", ADMIN)
    assert out.returncode == 1 and "unauthorized" in out.stderr


def _pair(server: Server, code: str, name: str) -> dict[str, Any]:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    import base64

    body = {"code": code, "public_key": base64.b64encode(raw).decode(), "name": name}
    return dict(api(server, "POST", "/v1/devices/pair", body=body))


def test_devices_shows_a_table_of_device_status(server: Server) -> None:
    """A paired device appears with its name and status; the admin sees it, and --json carries the same."""
    m = merchant(server)
    code = api(server, "POST", "/v1/pairing-codes", m["api_key"])
    device = _pair(server, code["code"], "old redmi")
    out = paybridge("devices", "--url", server.url, "--token", ADMIN)
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0]
    for column in ("ID", "NAME", "STATUS", "REASONS", "LAST SEEN", "BATTERY", "REPORTS TODAY"):
        assert column in header
    row = next(line for line in out.stdout.splitlines() if device["device_id"] in line)
    assert "old redmi" in row and "offline" in row
    listed = json.loads(paybridge("devices", "--json", "--url", server.url, "--api-key", m["api_key"]).stdout)
    assert [d["id"] for d in listed] == [device["device_id"]]


def test_orders_lists_pending_orders(server: Server) -> None:
    """`orders --status pending` shows the merchant's pending order and its pay amount; --json too."""
    m = merchant(server)
    order = api(
        server, "POST", "/v1/orders", m["api_key"], {"merchant_order_id": "A1", "amount": "9.90", "channel": "alipay"}
    )
    out = paybridge("orders", "--status", "pending", "--url", server.url, PAYBRIDGE_API_KEY=m["api_key"])
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if order["id"] in line)
    assert "A1" in row and "pending" in row and order["pay_amount"] in row
    paid = paybridge("orders", "--status", "paid", "--url", server.url, PAYBRIDGE_API_KEY=m["api_key"])
    assert paid.returncode == 0 and "No paid orders" in paid.stdout
    listed = json.loads(paybridge("orders", "--json", "--url", server.url, "--api-key", m["api_key"]).stdout)
    assert [o["id"] for o in listed] == [order["id"]]


def test_a_bad_flag_value_is_a_usage_error() -> None:
    """An unknown --status is refused by the parser with exit code 2."""
    out = paybridge("orders", "--status", "bogus")
    assert out.returncode == 2


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([["a", "bb"]], "X  Y\n-  --\na  bb\n"),
        ([["long", "1"], ["s", ""]], "X     Y\n----  -\nlong  1\ns\n"),
    ],
)
def test_table_aligns_columns(rows: list[list[str]], expected: str) -> None:
    """Columns are as wide as their widest cell and trailing blanks are trimmed."""
    assert table(rows, ["X", "Y"]) == expected


def test_compat_prints_the_shop_settings(server: Server) -> None:
    """`compat` prints pid, key, the URLs and the settings for dujiaoka (both drivers), v2board/Xboard and
    new-api, with the V免签 base ending in /; --rotate makes a new key; --json is the API's answer."""
    m = merchant(server)
    creds = api(server, "GET", "/v1/compat", m["api_key"])
    out = paybridge("compat", "--url", server.url, PAYBRIDGE_API_KEY=m["api_key"])
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"pid (商户ID):    {creds['pid']}\n" in text and creds["key"] in text
    assert f"商户KEY      merchant_key:    {server.url}/submit.php  (" in text
    assert f"商户密钥     merchant_pem:    {server.url}/vmq/{creds['pid']}/  (must end with /" in text
    assert f"支付地址       PayAddress: {server.url}/\n" in text and "v2board / Xboard" in text
    again = paybridge("compat", "--rotate", "--json", "--url", server.url, "--api-key", m["api_key"])
    rotated = json.loads(again.stdout)
    assert rotated["pid"] == creds["pid"] and rotated["key"] != creds["key"]
    assert api(server, "GET", "/v1/compat", m["api_key"])["key"] == rotated["key"]
