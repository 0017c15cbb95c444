"""`paybridge demo`: the whole flow on this computer, with a simulated phone and no configuration.

A bridge (the real app, in this process, on a free loopback port, data in a temporary directory),
a shop's webhook receiver that verifies every signature, a 易支付 shop (one order through
submit.php, its notify sign checked), and two simulated phones that are the
real device agent (pairing, outbox, client, run loop) reading a `replay` notification file.
The story printed is what was observed; the run exits 1 if anything did not happen as expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from bridge.config import Settings
from bridge.core import epay
from bridge.core.signing import verify
from bridge.core.states import OrderStatus, PaymentStatus
from bridge.logs import configure_logging
from bridge.web.app import create_app, make_runner
from device_agent.agent import Agent
from device_agent.config import AgentSettings, StatePaths
from device_agent.core.backoff import BackoffPolicy
from device_agent.core.notifications import Notification, fingerprint
from device_agent.core.parsers import ParseKind, ParseResult, parse
from device_agent.identity import load_key
from device_agent.outbox import Outbox
from device_agent.pairing import pair_device, resolve_pair_input
from device_agent.sources.base import ListenerHealth
from device_agent.sources.replay import ReplaySource

__all__ = ["run_demo"]

ALIPAY = "com.eg.android.AlipayGphone"
WECHAT = "com.tencent.mm"


def _items(now_ms: int) -> list[dict[str, Any]]:
    """The shade of the demo phone, in termux-notification-list form (what `replay:` reads)."""
    alipay = {
        "packageName": ALIPAY,
        "title": "你已成功收款5.00元",
        "content": "已转入余额 100积分兑收钱音箱，去兑换>>",
        "when": now_ms + 1,
        "key": f"0|{ALIPAY}|1234|null|10123",
        "id": 1234,
    }
    return [
        alipay,
        {
            "packageName": WECHAT,
            "title": "微信支付",
            "content": "[2条]微信支付: 微信支付收款12.70元(朋友到店)",
            "when": now_ms + 2,
            "key": f"0|{WECHAT}|42|null|10123",
            "id": 42,
        },
        dict(alipay),  # the phone re-reads the same notification
        {
            "packageName": ALIPAY,
            "title": "你已成功收款8.88元",
            "content": "已转入余额",
            "when": now_ms + 3,
            "key": f"0|{ALIPAY}|1240|null|10123",
            "id": 1240,
        },
        {
            "packageName": WECHAT,
            "title": "微信支付",
            "content": "已支付¥30.00",
            "when": now_ms + 4,
            "key": f"0|{WECHAT}|43|null|10123",
            "id": 43,
        },
        {
            "packageName": ALIPAY,
            "title": "你已成功收款9.90元",
            "content": "已转入余额",
            "when": now_ms + 5,
            "key": f"0|{ALIPAY}|1251|null|10123",
            "id": 1251,
        },
    ]


def _verifier() -> tuple[str, Callable[[str, dict[str, str], bytes], bool]]:
    """Verify with the Standard Webhooks reference package when installed, else our own `verify`."""
    try:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    except ImportError:

        def ours(secret: str, headers: dict[str, str], body: bytes) -> bool:
            try:
                ts = int(headers["webhook-timestamp"])
                return verify(
                    secret, headers["webhook-id"], ts, body, headers["webhook-signature"], now=int(time.time())
                )
            except (KeyError, ValueError):
                return False

        return "bridge.core.signing", ours

    def reference(secret: str, headers: dict[str, str], body: bytes) -> bool:
        try:
            Webhook(secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            return False
        return True

    return "the standardwebhooks package", reference


@dataclass
class Story:
    out: TextIO
    t0: float = field(default_factory=time.monotonic)

    def say(self, who: str, text: str) -> None:
        self.out.write(f"[{time.monotonic() - self.t0:6.2f}s] {who:<7} {text}\n")
        self.out.flush()


@dataclass
class Shop:
    """The shop's webhook endpoint: verifies each delivery, tells the story, keeps what it saw."""

    story: Story
    secret: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    names: dict[str, str] = field(default_factory=dict)  # order id -> merchant order id

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        method, check = _verifier()
        if not check(self.secret, {k.lower(): v for k, v in request.headers.items()}, body):
            self.bad += 1
            self.story.say("shop", "webhook with a BAD signature refused")
            return web.Response(status=400, text="bad signature")
        event = json.loads(body)
        self.events.append(event)
        self.arrived.set()
        kind, data = event["type"], event["data"]
        if kind == "order.paid":
            o, p = data["order"], data["payment"]
            self.story.say(
                "bridge", f"matched payment {p['id']} ({p['channel']} {p['amount']}) to order {o['merchant_order_id']}"
            )
            self.story.say(
                "shop",
                f"webhook order.paid for {o['merchant_order_id']} delivered, signature "
                f"verified with {method}: ship it!",
            )
        elif kind == "payment.unmatched":
            p = data["payment"]
            self.story.say(
                "shop",
                f"webhook payment.unmatched: {p['channel']} {p['amount']} fits no order "
                f"(verified); someone should look",
            )
        elif kind == "payment.received":
            p = data["payment"]
            self.story.say(
                "bridge",
                f"payment {p['id']} recorded: {p['channel']} {p['amount']} (webhook payment.received verified)",
            )
        return web.Response(text="ok")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


class StorySource:
    """The replay source, waiting for `go` and telling the story of each notification it reads."""

    def __init__(self, inner: ReplaySource, go: asyncio.Event, story: Story, who: str) -> None:
        self.name = inner.name
        self._inner, self._go, self._story, self._who = inner, go, story, who
        self._seen: set[str] = set()

    def health(self) -> ListenerHealth:
        return self._inner.health()

    async def read(self) -> list[Notification]:
        await self._go.wait()
        batch = await self._inner.read()
        for n in batch:
            text = f"{n.title} / {n.text}"
            fp = fingerprint(n)
            if fp in self._seen:
                self._story.say(self._who, f"re-read the same notification ({text}): already handled, dropped")
            self._seen.add(fp)
        return batch

    async def close(self) -> None:
        await self._inner.close()


def _telling_parser(story: Story, who: str) -> Callable[[Notification], ParseResult]:
    def parser(n: Notification) -> ParseResult:
        result = parse(n)
        verdict = (
            f"payment {result.channel} {result.amount_cents / 100:.2f}"
            if result.amount_cents is not None
            else f"{result.kind.value} ({result.reason})"
        )
        action = "ignored, not sent" if result.kind is ParseKind.IGNORED else "queued in the outbox and sent"
        story.say(who, f"notification seen: {n.title} / {n.text} -> {verdict}; {action}")
        return result

    return parser


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _serve(app: web.Application, sock: socket.socket | None = None) -> tuple[web.AppRunner, str]:
    runner = make_runner(app) if sock is not None else web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = sock or _free_socket()
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _phone(
    tmp: Path,
    name: str,
    pair_url: str,
    items: list[dict[str, Any]],
    story: Story,
    go: asyncio.Event,
    connected: asyncio.Event | None = None,
) -> Agent:
    """Pair a simulated phone with the real agent, run it over a replay file until drained."""
    state = StatePaths(tmp / name)
    request = resolve_pair_input(server=None, code=None, link=pair_url, name=name, channels=[], insecure=False)
    record = await pair_device(request, state, now_ms=int(time.time() * 1000), timeout=10)
    story.say(name, f"paired as {record.device_id} with {pair_url.split('&')[0]}...")
    replay = tmp / f"{name}.jsonl"
    replay.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    settings = AgentSettings(
        state=state,
        source=f"replay:{replay}",
        exit_when_drained=True,
        status_interval=0.5,
        backoff=BackoffPolicy(base=0.2, cap=1.0),
    )

    async def battery() -> dict[str, Any] | None:
        return {"level": 87, "charging": True}

    outbox = await Outbox.open(state.outbox)
    agent = Agent(
        settings=settings,
        device=record,
        key=load_key(state.key),
        source=StorySource(ReplaySource(replay, batch=1, delay=0.3), go, story, name),
        outbox=outbox,
        battery=battery,
        parser=_telling_parser(story, name),
    )
    stop = asyncio.Event()

    async def watch() -> None:
        for _ in range(1500):  # polled: the agent offers no connection event; bounded at 30 s
            if agent.client.status.state.value == "connected":
                break
            await asyncio.sleep(0.02)
        else:
            return
        story.say(name, "connected and authenticated (Ed25519 challenge-response)")
        if connected is not None:
            connected.set()

    watcher = asyncio.create_task(watch())
    try:
        code = await asyncio.wait_for(agent.run(stop), 30)
    finally:
        watcher.cancel()
        await outbox.close()
    if code != 0:
        raise RuntimeError(f"the agent of {name} stopped with exit code {code}")
    return agent


async def _eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@dataclass
class EpayShop:
    """A shop on 易支付 (as dujiaoka is): its notify URL checks the MD5 sign with the compat key."""

    story: Story
    key: str = ""
    notifies: list[dict[str, str]] = field(default_factory=list)
    bad: int = 0

    async def notify(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if not epay.md5_verify(params, self.key, params.get("sign", "")):
            self.bad += 1
            self.story.say("epay", "易支付 notify with a BAD sign refused")
            return web.Response(text="fail")
        self.notifies.append(params)
        self.story.say(
            "epay",
            f"易支付 notify for {params['out_trade_no']} (money {params['money']}, type {params['type']}) "
            "sign verified with the compat key: answered success",
        )
        return web.Response(text="success")


async def run_demo(out: TextIO, *, keep_running: bool = False) -> int:
    """Run the demo story; 0 when everything happened as expected, 1 otherwise."""
    configure_logging("json", "warning")
    with tempfile.TemporaryDirectory(prefix="paybridge-demo-") as tmp_name:
        tmp = Path(tmp_name)
        return await _run(tmp, out, keep_running)


async def _run(tmp: Path, out: TextIO, keep_running: bool) -> int:
    story = Story(out)
    sock = _free_socket()
    port = sock.getsockname()[1]
    admin = secrets.token_urlsafe(24)
    settings = Settings(
        data_dir=tmp / "bridge",
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        admin_token=admin,
        allow_private_webhooks=True,
        webhook_schedule="0,1,2,5",
        log_format="json",
        log_level="warning",
    )
    shop = Shop(story)
    shop_app = web.Application()
    shop_app.router.add_post("/webhooks", shop.handle)
    epay_shop = EpayShop(story)
    shop_app.router.add_get("/epay/notify", epay_shop.notify)
    bridge_runner, base = await _serve(create_app(settings), sock)
    shop_runner, shop_base = await _serve(shop_app)
    session = aiohttp.ClientSession()
    failures: list[str] = []

    async def call(method: str, path: str, token: str, body: Any = None) -> Any:
        async with session.request(method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
            answer = await r.json()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {answer}")
            return answer

    try:
        story.say("bridge", f"started at {base} (throw-away data in {tmp})")
        merchant = await call("POST", "/v1/merchants", admin, {"name": "Demo noodle shop"})
        key = merchant["api_key"]
        story.say("shop", f"merchant {merchant['id']} created")
        endpoint = await call("POST", "/v1/webhook-endpoints", key, {"url": shop_base + "/webhooks"})
        shop.secret = endpoint["secret"]
        story.say("shop", f"webhook endpoint {shop_base}/webhooks registered")

        go, connected = asyncio.Event(), asyncio.Event()
        code = await call("POST", "/v1/pairing-codes", key)
        story.say("shop", f"pairing code {code['code']} created")
        now_ms = int(time.time() * 1000)
        items = _items(now_ms)
        phone = asyncio.create_task(_phone(tmp, "phone", code["pair_url"], items, story, go, connected))
        waiter = asyncio.create_task(connected.wait())
        await asyncio.wait({phone, waiter}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if phone.done():
            await phone  # it stopped before connecting: its error tells why
        if not connected.is_set():
            phone.cancel()
            raise RuntimeError("the simulated phone did not connect within 15 s")

        phone_id = (await call("GET", "/v1/devices", key))["data"][0]["id"]
        account = await call(
            "POST",
            "/v1/accounts",
            key,
            {
                "channel": "alipay",
                "name": "Demo noodle shop 收钱码",
                "qr_payload": "https://qr.alipay.com/fkx00000demo",
                "device_ids": [phone_id],
            },
        )
        story.say("shop", f"receiving account {account['id']} (the shop's Alipay code) linked to the phone")

        orders = {}
        for ref, amount, channel in (
            ("A1001", "5.00", "alipay"),
            ("A1002", "12.70", "wechat"),
            ("A1003", "30.00", "any"),
        ):
            o = await call("POST", "/v1/orders", key, {"merchant_order_id": ref, "amount": amount, "channel": channel})
            orders[ref] = o
            story.say("shop", f"order {ref} created: {channel} {amount}, customer pays {o['pay_amount']}")
        epay_order = await _epay_order(session, base, shop_base, await call("GET", "/v1/compat", key), epay_shop)
        story.say("epay", f"a dujiaoka-style shop sent its payer to submit.php: order DJ1001, checkout {epay_order}")
        go.set()
        agent = await phone
        acked = agent.client.status.acked
        story.say("phone", f"outbox drained: {acked['accepted']} reports accepted by the bridge")

        code2 = await call("POST", "/v1/pairing-codes", key)
        story.say("backup", "a second phone logged in to the same Alipay account got its own notification")
        # Its own copy, as real phones get: another notification key and a `when` seconds later.
        copy = {**items[0], "when": items[0]["when"] + 2_400, "key": f"0|{ALIPAY}|7311|null|10157", "id": 7311}
        backup_go = asyncio.Event()
        backup_task = asyncio.create_task(_phone(tmp, "backup", code2["pair_url"], [copy], story, backup_go))

        async def paired_devices() -> list[dict[str, Any]]:
            return list((await call("GET", "/v1/devices", key))["data"])

        for _ in range(300):  # polled: pairing has no event to wait on; bounded at 15 s
            devices = await paired_devices()
            if len(devices) == 2 or backup_task.done():
                break
            await asyncio.sleep(0.05)
        backup_id = next((d["id"] for d in devices if d["id"] != phone_id), None)
        if backup_id is None:
            if backup_task.done():
                await backup_task  # it stopped before pairing: its error tells why
            backup_task.cancel()
            raise RuntimeError("the backup phone did not pair within 15 s")
        await call("POST", f"/v1/accounts/{account['id']}/devices", key, {"device_id": backup_id})
        story.say("backup", "linked to the same receiving account: both phones watch one Alipay account")
        backup_go.set()
        backup = await backup_task
        dup = backup.client.status.acked["duplicate"]
        story.say("backup", f"the bridge knew it as the same payment from another phone ({dup}): not paid twice")

        def webhooks_done() -> bool:
            return (
                len(shop.of_type("order.paid")) >= 3
                and len(shop.of_type("payment.unmatched")) >= 1
                and len(epay_shop.notifies) >= 1
            )

        await _eventually(webhooks_done, 15)
        await asyncio.sleep(0.3)  # anything wrong and late (a second order.paid) would show now

        # -- check the story against the bridge's own records --------------------------------
        final = {ref: await call("GET", f"/v1/orders/{o['id']}", key) for ref, o in orders.items()}
        epay_final = await call("GET", f"/v1/orders/{epay_order.rsplit('/', 1)[1]}", key)
        payments = (await call("GET", "/v1/payments?limit=100", key))["data"]
        paid_ids = {e["data"]["order"]["id"] for e in shop.of_type("order.paid")}
        expect = [
            (final["A1001"]["status"] == OrderStatus.PAID, "order A1001 (alipay 5.00) is paid"),
            (final["A1002"]["status"] == OrderStatus.PAID, "order A1002 (wechat 12.70) is paid"),
            (
                final["A1003"]["status"] == OrderStatus.PENDING,
                "order A1003 (30.00) stays pending: the outgoing payment is ignored",
            ),
            (epay_final["status"] == OrderStatus.PAID, "易支付 order DJ1001 (9.9) is paid"),
            (
                paid_ids == {orders["A1001"]["id"], orders["A1002"]["id"], epay_final["id"]},
                "exactly one order.paid per paid order",
            ),
            (len(shop.of_type("order.paid")) == 3, "no order.paid delivered twice"),
            (len(epay_shop.notifies) == 1 and epay_shop.bad == 0, "one 易支付 notify, its sign verified"),
            (len(payments) == 4, f"the bridge holds 4 payments (it holds {len(payments)})"),
            (sum(1 for p in payments if p["status"] == PaymentStatus.UNMATCHED) == 1, "one payment is unmatched"),
            (not any(p["amount"] == "30.00" for p in payments), "no payment of 30.00 was recorded"),
            (acked["accepted"] == 4, f"the phone sent 4 reports ({acked['accepted']} accepted)"),
            (dup == 1, "the backup phone's copy was acked as a duplicate"),
            (shop.bad == 0 and len(shop.events) > 0, "every webhook signature verified"),
        ]
        failures = [what for ok, what in expect if not ok]
        dropped = 1 + dup  # re-read on the phone + the backup phone's copy
        paid = sum(1 for o in [*final.values(), epay_final] if o["status"] == OrderStatus.PAID)
        out.write(
            "\nSummary\n"
            f"  orders paid:          {paid}"
            " of 3 expected\n"
            f"  duplicates dropped:   {dropped} (1 re-read on the phone, {dup} from the backup phone at the bridge)\n"
            f"  unmatched payments:   {sum(1 for p in payments if p['status'] == PaymentStatus.UNMATCHED)}\n"
            "  ignored:              1 (outgoing payment 已支付¥30.00, never sent)\n"
            f"  webhooks verified:    {len(shop.events)} (bad signatures: {shop.bad})\n"
            f"  易支付 notifies:      {len(epay_shop.notifies)} (bad signs: {epay_shop.bad})\n"
        )
        for what in failures:
            out.write(f"  NOT AS EXPECTED: {what}\n")
        out.write("Demo OK: every step happened as expected.\n" if not failures else "Demo FAILED.\n")
        out.flush()
        if keep_running:
            await _keep_running(out, base, admin, key)
    except Exception as e:  # the story stops here; say where
        out.write(f"Demo FAILED: {type(e).__name__}: {e}\n")
        failures.append(str(e))
    finally:
        await session.close()
        await shop_runner.cleanup()
        await bridge_runner.cleanup()
    return 1 if failures else 0


async def _epay_order(
    session: aiohttp.ClientSession, base: str, shop_base: str, compat: dict[str, Any], epay_shop: EpayShop
) -> str:
    """What a 易支付 shop does: a signed link to submit.php; the bridge answers 302 to the checkout page."""
    epay_shop.key = compat["key"]
    params = {
        "pid": str(compat["pid"]),
        "type": "alipay",
        "out_trade_no": "DJ1001",
        "notify_url": f"{shop_base}/epay/notify",
        "return_url": f"{shop_base}/epay/return",
        "name": "牛肉面 beef noodles",
        "money": "9.9",
    }
    signed = {**params, "sign": epay.md5_sign(params, compat["key"]), "sign_type": "MD5"}
    async with session.get(compat["submit_url"], params=signed, allow_redirects=False) as r:
        if r.status != 302:
            raise RuntimeError(f"submit.php answered {r.status}: {await r.text()}")
        return str(r.headers["Location"])


async def _keep_running(out: TextIO, base: str, admin: str, key: str) -> None:
    out.write(
        f"\nThe bridge keeps running at {base} until Ctrl-C (its data is deleted then).\n"
        f"  admin token:       {admin}\n"
        f"  merchant API key:  {key}\n"
        f"dashboard: {base}/dashboard\n"
        f"sign in with: {key}\n"
        f"  (or, as the admin: {admin})\n"
        "Try:\n"
        f"  curl -s {base}/v1/orders -H 'Authorization: Bearer {key}'\n"
        f"  curl -s -X POST {base}/v1/orders -H 'Authorization: Bearer {key}' "
        """-d '{"merchant_order_id": "A2001", "amount": "9.90", "channel": "alipay"}'\n"""
        f"  curl -s {base}/v1/devices -H 'Authorization: Bearer {admin}'\n"
        f"  PAYBRIDGE_URL={base} PAYBRIDGE_API_KEY={key} paybridge orders --status paid\n"
    )
    out.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(asyncio.CancelledError):
        await stop.wait()
