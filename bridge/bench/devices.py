"""Simulated relay phones for the benchmark, built from the real agent code.

Each device is the agent's own `DeviceClient` (auth, window, acks, heartbeats, reconnects) fed
by the agent's parser and report-frame builder. The one substitution: the client's outbox is
`MemoryOutbox`, a duck-typed in-memory stand-in for the agent's SQLite `Outbox`. A phone writes
each notification to flash before sending it; here that cost would land in the load generator
and say nothing about the bridge, so the bench leaves it out (the agent's own tests cover it).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp

from device_agent.client import ConnectionState, DeviceClient, HeartbeatExtras
from device_agent.core.backoff import BackoffPolicy
from device_agent.core.notifications import Notification
from device_agent.core.pair_url import websocket_url
from device_agent.core.parsers import ALIPAY_PACKAGE, ParseKind, parse
from device_agent.core.protocol import encode, report_frame
from device_agent.identity import generate_key, public_key_b64
from device_agent.outbox import Outbox, OutboxItem

__all__ = ["MemoryOutbox", "SimDevice", "alipay_report", "pair_devices"]

SendHook = Callable[[str, float], None]
AckHook = Callable[[str, float], None]


class MemoryOutbox:
    """What `DeviceClient` needs from an outbox (`pending`, `ack`, `depth`), in memory.

    `on_send(event_id, t)` fires when the client takes an item to send (it sends it at once);
    `on_ack(event_id, t)` when the bridge's ack deletes it. `t` is `time.perf_counter()`.
    """

    def __init__(self, on_send: SendHook | None = None, on_ack: AckHook | None = None) -> None:
        self._items: dict[int, OutboxItem] = {}  # seq -> item, insertion (= seq) order
        self._by_event: dict[str, int] = {}
        self._on_send = on_send
        self._on_ack = on_ack
        self.last_seq = 0

    def add(self, body: dict[str, Any]) -> OutboxItem:
        item = OutboxItem(seq=int(body["seq"]), event_id=str(body["event_id"]), body=encode(body), created_at=0)
        self._items[item.seq] = item
        self._by_event[item.event_id] = item.seq
        self.last_seq = max(self.last_seq, item.seq)
        return item

    async def pending(self, *, after_seq: int = 0, limit: int = 64) -> list[OutboxItem]:
        out: list[OutboxItem] = []
        for seq, item in self._items.items():  # acked items are gone, so in-flight ones lead
            if seq > after_seq:
                out.append(item)
                if len(out) >= limit:
                    break
        if self._on_send is not None:
            now = time.perf_counter()
            for item in out:
                self._on_send(item.event_id, now)
        return out

    async def ack(self, *, event_id: str | None, seq: int | None = None, now_ms: int) -> bool:
        if event_id is not None:
            seq = self._by_event.pop(event_id, None)
        if seq is None or self._items.pop(seq, None) is None:
            return False
        if self._on_ack is not None and event_id is not None:
            self._on_ack(event_id, time.perf_counter())
        return True

    async def depth(self) -> int:
        return len(self._items)


_BATTERY = {"level": 80, "charging": True}
_LISTENER = {"ok": True, "source": "bench", "error": None}


async def _extras() -> HeartbeatExtras:
    return HeartbeatExtras(battery=dict(_BATTERY), listener=dict(_LISTENER), last_notification_at={})


@dataclass
class SimDevice:
    """One simulated phone: the agent's DeviceClient over a MemoryOutbox."""

    device_id: str
    client: DeviceClient
    outbox: MemoryOutbox
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @classmethod
    def create(
        cls, server: str, device_id: str, key: Any, *, window: int, on_send: SendHook | None, on_ack: AckHook | None
    ) -> SimDevice:
        outbox = MemoryOutbox(on_send, on_ack)
        holder: list[SimDevice] = []

        def changed() -> None:
            if holder and holder[0].client.status.state is ConnectionState.CONNECTED:
                holder[0].connected.set()

        client = DeviceClient(
            ws_url=websocket_url(server),
            device_id=device_id,
            key=key,
            outbox=cast(Outbox, outbox),
            extras=_extras,
            window=window,
            backoff=BackoffPolicy(base=0.5, cap=5.0),
            agent_version="bench",
            on_change=changed,
        )
        device = cls(device_id, client, outbox)
        holder.append(device)
        return device

    def start(self, stop: asyncio.Event) -> None:
        self.task = asyncio.create_task(self.client.run(stop), name=f"bench-device-{self.device_id}")


def alipay_report(seq: int, amount_cents: int, now_ms: int) -> dict[str, Any]:
    """A report frame for "你已成功收款X.XX元", parsed by the agent's real Alipay parser."""
    yuan = f"{amount_cents // 100}.{amount_cents % 100:02d}"
    note = Notification(
        package=ALIPAY_PACKAGE,
        title=f"你已成功收款{yuan}元",
        text="已转入余额 100积分兑收钱音箱，去兑换>>",
        when=now_ms,
        key=f"0|{ALIPAY_PACKAGE}|{uuid.uuid4().hex}|null|10123",
    )
    parsed = parse(note)
    if parsed.kind is not ParseKind.PAYMENT or parsed.amount_cents != amount_cents:
        raise RuntimeError(f"the Alipay parser read {parsed} from {note.title!r}")
    return report_frame(event_id=str(uuid.uuid4()), seq=seq, observed_at=now_ms, parsed=parsed, notification=note)


async def pair_devices(
    session: aiohttp.ClientSession, base_url: str, api_key: str, count: int, *, concurrency: int = 32
) -> list[tuple[str, Any]]:
    """Pair `count` devices through the HTTP API (pairing code, then pair); [(device id, key)]."""
    out: list[tuple[str, Any]] = []
    auth = {"Authorization": f"Bearer {api_key}"}
    next_index = iter(range(count))

    async def worker() -> None:
        for i in next_index:
            async with session.post(base_url + "/v1/pairing-codes", headers=auth) as r:
                code = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"pairing code: {r.status} {code}")
            key = generate_key()
            body = {"code": code["code"], "public_key": public_key_b64(key), "name": f"bench-{i}"}
            async with session.post(base_url + "/v1/devices/pair", json=body) as r:
                answer = await r.json()
                if r.status != 201:
                    raise RuntimeError(f"pair: {r.status} {answer}")
            out.append((str(answer["device_id"]), key))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return out
