"""Chaos on a cluster: several `paybridge serve` processes on one PostgreSQL schema, SIGKILLed and
restarted at random while their database connections are cut under them.

INSTANCES bridge processes share a schema (and the secrets key); AGENTS real agent processes
(`python -m device_agent run` with replay sources, as tests/e2e/test_chaos.py) are paired through
them round-robin, each staying with its instance; PAYMENTS orders are created through all of them,
and the agents report one payment for each. Meanwhile a random instance is SIGKILLed and started
again on its port KILLS times, and CUTS times every database connection of the cluster is ended
with pg_terminate_backend. A webhook receiver answers 500 to 10 % of the requests.

Checked at the end, from the database and the receiver: every notification gave one payment and
every order was paid once by a distinct payment, with one order.paid event; every order.paid
reached the receiver under one webhook-id; and every report an agent saw acknowledged is in the
database (an agent exits only when its outbox is empty, so an ack sent before its commit, lost in
a kill or a cut, would show up as a missing payment).

PostgreSQL only, and only in the PostgreSQL pass (`PAYBRIDGE_TEST_DATABASE_URL` set; scripts/check
runs it there at CI size). Sizes come from CHAOS_CLUSTER_{INSTANCES,AGENTS,PAYMENTS,KILLS,CUTS};
the full run (3 instances, 20 agents, 2,000 payments) is `scripts/chaos_cluster`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
from aiohttp import web

from tests import pg
from tests.e2e.test_chaos import ALIPAY, Agent, _api, _fen_text, free_port
from tests.harness import running_handler

INSTANCES = int(os.environ.get("CHAOS_CLUSTER_INSTANCES", "3"))
AGENTS = int(os.environ.get("CHAOS_CLUSTER_AGENTS", "6"))
PAYMENTS = int(os.environ.get("CHAOS_CLUSTER_PAYMENTS", "300"))
KILLS = int(os.environ.get("CHAOS_CLUSTER_KILLS", "3"))
CUTS = int(os.environ.get("CHAOS_CLUSTER_CUTS", "3"))
ADMIN = "chaos-cluster-admin-token-0123456789"
LEASE = 3.0  # s: a killed instance's webhook deliveries are taken over this long after its death

_STARTED: list[subprocess.Popen[bytes]] = []

pytestmark = pytest.mark.skipif(
    not pg.e2e_on_postgres(), reason="the PostgreSQL pass only (PAYBRIDGE_TEST_DATABASE_URL=postgresql://...)"
)


@pytest.fixture(autouse=True)
def _no_orphans() -> Iterator[None]:
    """No bridge or agent process outlives the test, whatever happens in it."""
    yield
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    _STARTED.clear()


@dataclass
class Instance:
    """One `paybridge serve` on the shared schema, with its own data dir and a fixed port."""

    name: str
    data_dir: Path
    port: int
    url_db: str
    key_file: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYBRIDGE_")}
        env.update(
            PAYBRIDGE_DATABASE_URL=self.url_db,
            PAYBRIDGE_SECRETS_KEY_FILE=str(self.key_file),
            PAYBRIDGE_ADMIN_TOKEN=ADMIN,
            PAYBRIDGE_ALLOW_PRIVATE_WEBHOOKS="1",
            PAYBRIDGE_WEBHOOK_SENDER="inline",
            PAYBRIDGE_WEBHOOK_LEASE=str(LEASE),
            PAYBRIDGE_WEBHOOK_TIMEOUT="2",
            PAYBRIDGE_WEBHOOK_SCHEDULE=",".join(["0"] + ["1"] * 30),
            PAYBRIDGE_PAIRING_ATTEMPTS_PER_MINUTE="100000",
            PAYBRIDGE_PAIRING_CODES_PER_MINUTE="100000",
            PAYBRIDGE_DEVICE_MAX_FRAMES_PER_SECOND="5000",
            PAYBRIDGE_LOG_LEVEL="warning",
            PAYBRIDGE_LOG_FORMAT="json",
        )
        argv = [sys.executable, "-m", "bridge", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        _STARTED.append(self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.kills += 1

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    async def ready(self, session: aiohttp.ClientSession, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(self.url + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not come up; log:\n{self.log.read_text()[-3000:]}")


@dataclass
class Receiver:
    """The shop's endpoint: 500 for 10 % of requests; counts 2xx answers per webhook-id and per order."""

    rng: random.Random
    requests: int = 0
    paid_requests: int = 0  # order.paid requests, 500s included
    ok: collections.Counter[str] = field(default_factory=collections.Counter)  # webhook-id -> 2xx answers
    ids_by_order: dict[str, set[str]] = field(default_factory=lambda: collections.defaultdict(set))

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.requests += 1
        if body["type"] != "order.paid":
            return web.Response(text="ignored")
        self.paid_requests += 1
        if self.rng.random() < 0.10:
            return web.Response(status=500, text="try again")
        webhook_id = request.headers["webhook-id"]
        assert webhook_id == body["id"]
        self.ok[webhook_id] += 1
        self.ids_by_order[body["data"]["order"]["id"]].add(webhook_id)
        return web.Response(text="ok")


def _terminate_all(app_name: str) -> int:
    """pg_terminate_backend on every connection of the cluster (they carry `app_name`)."""
    with psycopg.connect(pg.server_url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app_name,),
        ).fetchall()
    return sum(1 for r in rows if r[0])


def _log_counts(logs: list[Path]) -> collections.Counter[str]:
    """How often the instances logged the events that show the chaos working (JSON log lines)."""
    wanted = {"db.reconnect", "db.batch_rerun", "db.commit_outcome_unknown", "db.batch_failed", "report.failed"}
    counts: collections.Counter[str] = collections.Counter()
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError, AttributeError):
                event = json.loads(line).get("event")
                if event in wanted:
                    counts[event] += 1
    return counts


def _replay(path: Path, indices: range, amounts: list[int], now_ms: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in indices:
            line = {
                "id": i,
                "key": f"0|{ALIPAY}|{i}|null|10123",
                "packageName": ALIPAY,
                "title": f"你已成功收款{_fen_text(amounts[i])}元",
                "content": "已转入余额",
                "when": now_ms + i,
            }
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


@pytest.mark.slow
@pytest.mark.timeout(180 + PAYMENTS // 8 + 15 * (KILLS + CUTS))
async def test_chaos_cluster(tmp_path: Path) -> None:
    """Every payment recorded once, every order paid once under one webhook-id, nothing acked before
    its commit, through SIGKILLs of cluster instances and cut database connections."""
    rng = random.Random(int(os.environ.get("CHAOS_SEED", "20261203")))
    app_name = f"pbchaos_{uuid.uuid4().hex[:8]}"
    url_db = f"{pg.fresh_database()}&application_name={app_name}"
    instances = [
        Instance(f"i{k}", tmp_path / f"i{k}", free_port(), url_db, tmp_path / "secrets.key", tmp_path / f"i{k}.log")
        for k in range(INSTANCES)
    ]
    amounts = [100 + i for i in range(PAYMENTS)]  # distinct: each order keeps its asked amount
    receiver = Receiver(rng)
    started = time.monotonic()
    async with running_handler(receiver.handle) as rec_url, aiohttp.ClientSession() as s:
        instances[0].start()  # the first one migrates the schema; the others start on it
        await instances[0].ready(s)
        for inst in instances[1:]:
            inst.start()
        for inst in instances[1:]:
            await inst.ready(s)
        key = (await _api(s, "POST", instances[0].url + "/v1/merchants", ADMIN, {"name": "chaos"}))["api_key"]
        await _api(s, "POST", instances[1 % INSTANCES].url + "/v1/webhook-endpoints", key, {"url": rec_url + "/hook"})
        sem = asyncio.Semaphore(12)

        async def create(i: int) -> dict[str, Any]:
            body = {"merchant_order_id": f"c-{i}", "amount_cents": amounts[i], "channel": "alipay", "expires_in": 86400}
            async with sem:
                return dict(await _api(s, "POST", instances[i % INSTANCES].url + "/v1/orders", key, body))

        orders = await asyncio.gather(*(create(i) for i in range(PAYMENTS)))
        assert [o["pay_amount_cents"] for o in orders] == amounts

        agents: list[Agent] = []
        now_ms = int(time.time() * 1000)
        for k in range(AGENTS):
            replay = tmp_path / f"agent{k}.jsonl"
            _replay(replay, range(k, PAYMENTS, AGENTS), amounts, now_ms)
            agent = Agent(f"phone{k}", tmp_path / f"agent{k}", replay, tmp_path / f"agent{k}.log")
            home = instances[k % INSTANCES]
            code = await _api(s, "POST", home.url + "/v1/pairing-codes", key)
            await asyncio.to_thread(agent.pair, home.url, code["code"])
            agents.append(agent)
        for agent in agents:
            agent.start()
            assert agent.proc is not None
            _STARTED.append(agent.proc)

        # Chaos: KILLS instance kills and CUTS connection cuts, shuffled, at random moments while the
        # agents report (and, if they finish first, while the webhooks go out).
        plan = ["kill"] * KILLS + ["cut"] * CUTS
        rng.shuffle(plan)
        cut_connections = 0
        for what in plan:
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            if what == "kill":
                victim = rng.choice(instances)
                victim.kill()
                await asyncio.sleep(rng.uniform(0.0, 1.0))
                victim.start()
                await victim.ready(s)
            else:
                cut_connections += await asyncio.to_thread(_terminate_all, app_name)

        deadline = time.monotonic() + 120 + PAYMENTS // 10
        while not all(a.done() for a in agents):
            for a in agents:
                assert a.proc is not None
                assert a.proc.poll() in (None, 0), f"{a.name} exited {a.proc.poll()}:\n{a.log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "agents did not drain: " + "; ".join(
                a.log.read_text()[-300:] for a in agents
            )
            await asyncio.sleep(0.2)
        drained = time.monotonic() - started

        order_ids = {o["id"] for o in orders}
        while set(receiver.ids_by_order) != order_ids:
            assert time.monotonic() < deadline, f"{len(receiver.ids_by_order)} of {PAYMENTS} order.paid delivered"
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        for inst in instances:
            assert inst.stop() == 0, inst.log.read_text()[-3000:]

    with psycopg.connect(url_db, autocommit=True) as db:
        payments = db.execute("SELECT fingerprint, status, order_id FROM payments").fetchall()
        paid = db.execute("SELECT id, payment_id FROM orders WHERE status = 'paid'").fetchall()
        not_paid = db.execute("SELECT COUNT(*) FROM orders WHERE status <> 'paid'").fetchone()
        paid_events = db.execute("SELECT COUNT(*) FROM events WHERE type = 'order.paid'").fetchone()
        reports = db.execute("SELECT COUNT(*), COUNT(DISTINCT (device_id, event_id)) FROM reports").fetchone()
    assert not_paid is not None and paid_events is not None and reports is not None

    redelivered = sum(n - 1 for n in receiver.ok.values())
    summary = {
        "instances": INSTANCES,
        "agents": AGENTS,
        "payments": len(payments),
        "orders_paid": len(paid),
        "instance_kills": sum(i.kills for i in instances),
        "connections_terminated": cut_connections,
        "webhook_requests": receiver.requests,
        "order_paid_requests": receiver.paid_requests,
        "order_paid_retries": receiver.paid_requests - PAYMENTS,
        "webhooks_answered_2xx_again": redelivered,
        "orders_with_two_webhook_ids": sum(len(ids) > 1 for ids in receiver.ids_by_order.values()),
        "reports_stored": reports[0],
        **{k.replace(".", "_"): v for k, v in sorted(_log_counts([i.log for i in instances]).items())},
        "seconds_to_drain": round(drained, 1),
        "seconds_total": round(elapsed, 1),
    }
    print("\nCHAOS_CLUSTER " + json.dumps(summary))
    assert sum(i.kills for i in instances) == KILLS and cut_connections >= CUTS
    assert len(payments) == PAYMENTS, "a notification was lost or doubled (or acked before its commit)"
    assert len({p[0] for p in payments}) == PAYMENTS
    assert {p[1] for p in payments} == {"matched"}
    assert len(paid) == PAYMENTS and not_paid[0] == 0
    assert len({p[1] for p in paid}) == PAYMENTS, "an order was paid twice"
    assert paid_events[0] == PAYMENTS, "an order.paid event was raised twice"
    assert reports[0] == reports[1] == PAYMENTS, "an acknowledged report is not in the database"
    assert all(len(ids) == 1 for ids in receiver.ids_by_order.values()), "a redelivery changed its webhook-id"
