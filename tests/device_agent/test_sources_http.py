"""The http source: a token-protected local endpoint for forwarder apps, over real loopback sockets."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from device_agent.sources import open_source
from device_agent.sources.http import HttpSource, load_or_create_token

TOKEN = "s3cret-token-for-tests"
NOW_MS = 1764206400000
ALIPAY = "com.eg.android.AlipayGphone"


@pytest.fixture
async def server() -> AsyncIterator[HttpSource]:
    """A started http source on an ephemeral loopback port with a fixed clock."""
    src = HttpSource("127.0.0.1", 0, token=TOKEN, now_ms=lambda: NOW_MS)
    await src.start()
    yield src
    await src.close()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client."""
    async with aiohttp.ClientSession() as session:
        yield session


def url(src: HttpSource, query: str = "") -> str:
    return f"http://127.0.0.1:{src.port}/notify{query}"


BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def test_a_json_post_with_a_bearer_token_is_queued_and_read(
    server: HttpSource, client: aiohttp.ClientSession
) -> None:
    """A JSON notification is answered 202 and read back with all its fields."""
    body = {
        "packageName": ALIPAY,
        "title": "你已成功收款5.00元",
        "text": "已转入余额",
        "when": 1764206400990,
        "key": "k1",
    }
    async with client.post(url(server), json=body, headers=BEARER) as r:
        assert r.status == 202
    [n] = await server.read()
    assert (n.package, n.title, n.text, n.when, n.key) == (
        ALIPAY,
        "你已成功收款5.00元",
        "已转入余额",
        1764206400990,
        "k1",
    )


async def test_smsforwarder_default_form_post_is_understood(server: HttpSource, client: aiohttp.ClientSession) -> None:
    """SmsForwarder's form fields from/content/timestamp with a token field become package/text/when."""
    form = {
        "from": "com.tencent.mm",
        "content": "微信支付收款12.00元(朋友到店)",
        "timestamp": "1764206473000",
        "token": TOKEN,
    }
    async with client.post(url(server), data=form) as r:
        assert r.status == 202
    [n] = await server.read()
    assert (n.package, n.text, n.when, n.title) == (
        "com.tencent.mm",
        "微信支付收款12.00元(朋友到店)",
        1764206473000,
        None,
    )


async def test_smsforwarder_json_template_prefers_the_raw_text(
    server: HttpSource, client: aiohttp.ClientSession
) -> None:
    """The JSON template's `text` ([org_content]) wins over a rendered `content`; the token may be a query field."""
    body = {
        "from": ALIPAY,
        "title": "收钱码到账通知",
        "text": "成功收款88.00元",
        "content": "FROM…\n成功收款88.00元\n…",
        "receive_time": "2026-11-27 09:20:00",
        "timestamp": "1764206500000",
        "sign": "x%2By",
        "device": "redmi",
    }
    async with client.post(
        url(server, f"?token={TOKEN}&t=1"),
        data=json.dumps(body, ensure_ascii=False),
        headers={"Content-Type": "application/json"},
    ) as r:
        assert r.status == 202
    [n] = await server.read()
    assert (n.title, n.text, n.when) == ("收钱码到账通知", "成功收款88.00元", 1764206500000)


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({}, ""),
        ({"Authorization": "Bearer wrong"}, ""),
        ({}, "?token=wrong"),
        ({"Authorization": f"Basic {TOKEN}"}, ""),
    ],
    ids=["none", "wrong-bearer", "wrong-query", "not-bearer"],
)
async def test_a_missing_or_wrong_token_is_refused(
    server: HttpSource, client: aiohttp.ClientSession, headers: dict[str, str], query: str
) -> None:
    """Without the right token the answer is 401 and nothing is queued."""
    async with client.post(url(server, query), json={"package": ALIPAY, "title": "t"}, headers=headers) as r:
        assert r.status == 401
        assert "error" in await r.json()
    async with client.post(url(server), json={"package": "after", "title": "t"}, headers=BEARER) as r:
        assert r.status == 202
    assert [n.package for n in await server.read()] == ["after"]


async def test_a_body_over_64_kib_is_refused(server: HttpSource, client: aiohttp.ClientSession) -> None:
    """A body over 64 KiB is answered 413, announced or chunked."""
    big = json.dumps({"package": ALIPAY, "text": "x" * 70_000}).encode()
    async with client.post(url(server), data=big, headers=BEARER) as r:
        assert r.status == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"a" * 20_000

    async with client.post(url(server), data=chunks(), headers=BEARER) as r:
        assert r.status == 413


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", json.dumps({"title": "no package"}).encode(), json.dumps({"package": 5}).encode()],
    ids=["bad-json", "array", "no-package", "package-not-string"],
)
async def test_bad_input_is_a_400_with_a_json_error(
    server: HttpSource, client: aiohttp.ClientSession, body: bytes
) -> None:
    """Malformed bodies and missing or mistyped fields are answered 400 with a JSON error."""
    async with client.post(url(server), data=body, headers={**BEARER, "Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert isinstance((await r.json())["error"], str)


async def test_a_missing_key_is_a_stable_digest_and_a_missing_when_is_the_receipt_time(
    server: HttpSource, client: aiohttp.ClientSession
) -> None:
    """Equal posts without key get equal keys, a different text another key; when is the arrival time."""
    for text in ("成功收款5.00元", "成功收款5.00元", "成功收款6.00元"):
        async with client.post(url(server), json={"package": ALIPAY, "title": "t", "text": text}, headers=BEARER) as r:
            assert r.status == 202
    batch = await server.read()
    assert [n.when for n in batch] == [NOW_MS] * 3
    assert batch[0].key == batch[1].key != batch[2].key


async def test_read_waits_for_a_post_and_returns_everything_queued(
    server: HttpSource, client: aiohttp.ClientSession
) -> None:
    """A read blocks until something is posted and then returns all queued notifications in one batch."""
    waiting = asyncio.create_task(server.read())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    for i in range(3):
        async with client.post(url(server), json={"package": ALIPAY, "key": f"k{i}"}, headers=BEARER) as r:
            assert r.status == 202
    first = await waiting
    rest = await server.read() if len(first) < 3 else []
    assert [n.key for n in first + rest] == ["k0", "k1", "k2"]


async def test_only_post_on_notify_is_served(server: HttpSource, client: aiohttp.ClientSession) -> None:
    """Other paths and methods are not notifications."""
    async with client.get(url(server), headers=BEARER) as r:
        assert r.status == 405
    async with client.post(f"http://127.0.0.1:{server.port}/other", json={}, headers=BEARER) as r:
        assert r.status == 404


async def test_health_is_ok_only_while_listening() -> None:
    """Not started, listening and closed are three health states; a closed source refuses connections."""
    src = HttpSource("127.0.0.1", 0, token=TOKEN)
    assert src.health().to_wire() == {"ok": False, "source": "http", "error": "not_started"}
    await src.start()
    assert src.health().ok and src.port != 0
    port = src.port
    await src.close()
    assert not src.health().ok and src.health().error == "stopped"
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_port_in_use_is_reported(server: HttpSource) -> None:
    """Binding a taken port raises and leaves the health saying why."""
    other = HttpSource("127.0.0.1", server.port, token=TOKEN)
    with pytest.raises(OSError):
        await other.start()
    assert other.health().ok is False and str(other.health().error).startswith("cannot_listen")


def test_the_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    """A missing token is made with 128 random bits in a 0600 file and read back the next time."""
    state = tmp_path / "state"
    token = load_or_create_token(state)
    path = state / "http_token"
    assert len(token) >= 22 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(state) == token
    assert load_or_create_token(tmp_path / "other") != token


async def test_open_source_makes_an_http_source_with_the_state_dir_token(
    tmp_path: Path, client: aiohttp.ClientSession
) -> None:
    """`http:127.0.0.1:0` listens and accepts the token written to the state dir."""
    src = open_source("http:127.0.0.1:0", state_dir=tmp_path)
    assert isinstance(src, HttpSource)
    await src.start()
    try:
        token = (tmp_path / "http_token").read_text().strip()
        async with client.post(url(src), json={"package": ALIPAY}, headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 202
    finally:
        await src.close()
