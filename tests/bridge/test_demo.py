"""`paybridge demo`: one command, no phone, no configuration, and a story that is checked."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}


def test_demo_tells_the_whole_story_and_exits_0() -> None:
    """The demo exits 0 and its output names every step, for each kind of notification, and the summary."""
    out = subprocess.run(
        [sys.executable, "-m", "bridge", "demo"], capture_output=True, text=True, timeout=90, env=_env(), cwd=ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for step in (
        "order A1001 created",
        "order A1002 created",
        "notification seen: 你已成功收款5.00元",
        "[2条]微信支付: 微信支付收款12.70元(朋友到店)",
        "matched payment",
        "to order A1001",
        "to order A1002",
        "webhook order.paid for A1001 delivered, signature verified",
        "webhook order.paid for A1002 delivered, signature verified",
        "re-read the same notification",
        "the same payment from another phone",
        "payment.unmatched: alipay 8.88",
        "已支付¥30.00 -> ignored",
        "sent its payer to submit.php: order DJ1001",
        "易支付 notify for DJ1001 (money 9.9, type alipay) sign verified",
        "Demo OK",
    ):
        assert step in text, f"missing {step!r} in:\n{text}"
    assert re.search(r"orders paid:\s+3 of 3", text)
    assert re.search(r"易支付 notifies:\s+1 \(bad signs: 0\)", text)
    assert re.search(r"duplicates dropped:\s+2", text)
    assert re.search(r"unmatched payments:\s+1", text)
    assert re.search(r"ignored:\s+1", text)
    assert re.search(r"webhooks verified:\s+\d+ \(bad signatures: 0\)", text)
    assert text.index("order A1001 created") < text.index("notification seen: 你已成功收款5.00元")
    assert text.index("notification seen: 你已成功收款5.00元") < text.index("webhook order.paid for A1001")


def test_keep_running_leaves_a_usable_bridge_until_interrupted() -> None:
    """With --keep-running the printed URL and API key answer the API, and Ctrl-C ends the demo with 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "demo", "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "paybridge orders --status paid" in line:
                break
        text = "".join(lines)
        base = re.search(r"keeps running at (http://\S+)", text)
        key = re.search(r"merchant API key:\s+(\S+)", text)
        admin = re.search(r"admin token:\s+(\S+)", text)
        assert base and key and admin, text
        req = urllib.request.Request(base.group(1) + "/v1/orders?status=paid")
        req.add_header("Authorization", f"Bearer {key.group(1)}")
        with urllib.request.urlopen(req, timeout=10) as r:
            paid = json.loads(r.read())["data"]
        assert sorted(o["merchant_order_id"] for o in paid) == ["A1001", "A1002", "DJ1001"]
        dashboard = re.search(r"^dashboard: (http://\S+)$", text, re.M)
        sign_in_key = re.search(r"^sign in with: (\S+)$", text, re.M)
        assert dashboard and sign_in_key and sign_in_key.group(1) == key.group(1), text
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(dashboard.group(1) + "/sign-in", timeout=10) as r:
            csrf = re.search(r'name="csrf" value="([^"]+)"', r.read().decode())
        assert csrf
        form = urllib.parse.urlencode({"csrf": csrf.group(1), "secret": sign_in_key.group(1)}).encode()
        with browser.open(dashboard.group(1) + "/sign-in", data=form, timeout=10) as r:
            assert r.url.endswith("/dashboard/phones") and "Demo noodle shop" in r.read().decode()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
