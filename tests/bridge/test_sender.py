"""The webhook sender child process: a real `python -m bridge.sender` and a real local receiver."""

from __future__ import annotations

import asyncio
import os
import signal
import struct

import pytest
from aiohttp import web

from bridge.errors import SendFailure
from bridge.sender import (
    EXITED,
    PROTOCOL,
    SenderProcess,
    SendRequest,
    decode_reply,
    decode_request,
    encode_frame,
    encode_reply,
    encode_request,
    read_frame,
)
from bridge.transport import TransportResult
from tests.harness import running_handler, running_receiver


def _port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def test_a_send_goes_through_the_child_byte_for_byte() -> None:
    """Headers and the exact body bytes (non-ASCII included) reach the receiver; the status comes back."""
    sender = SenderProcess(allow_private=True)
    try:
        async with running_receiver() as rec:
            body = '{"type":"order.paid","note":"收款 5.00 元"}'.encode()
            result = await sender.send(rec.url, {"webhook-id": "evt_1", "webhook-timestamp": "1"}, body, 5.0)
            assert result.status == 200 and result.error is None and result.elapsed_ms > 0
            headers, got = rec.requests[0]
            assert got == body
            assert headers["webhook-id"] == "evt_1" and headers["webhook-timestamp"] == "1"
            assert headers["user-agent"] == "Paybridge-Webhooks/0.1"
            assert sender.starts == 1
            child = sender._child
            assert child is not None and child.proc.pid != os.getpid()
    finally:
        await sender.close()


async def test_concurrent_sends_get_their_own_answers() -> None:
    """200 sends in flight at once: every caller gets the status its own request earned, Retry-After included."""

    async def handler(request: web.Request) -> web.Response:
        code = int(request.match_info["tail"].rsplit("/", 1)[1])
        await asyncio.sleep((code % 7) / 1000)  # answers come back out of order
        return web.Response(status=code, headers={"Retry-After": "7"} if code == 503 else {})

    sender = SenderProcess(allow_private=True)
    codes = [(200, 201, 204, 400, 404, 500, 503)[i % 7] for i in range(200)]
    try:
        async with running_handler(handler) as base:
            results = await asyncio.gather(*(sender.send(f"{base}/s/{c}", {}, b"{}", 10.0) for c in codes))
        assert [r.status for r in results] == codes
        assert all((r.retry_after == 7.0) == (r.status == 503) for r in results)
    finally:
        await sender.close()


async def test_the_child_keeps_the_timeout_and_the_address_guard() -> None:
    """A hanging receiver is a timeout; without allow_private a loopback target is refused in the child."""
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response()

    open_sender = SenderProcess(allow_private=True)
    guarded = SenderProcess(allow_private=False)
    try:
        async with running_handler(hang) as base:
            slow = await open_sender.send(f"{base}/x", {}, b"{}", 0.3)
            assert slow.status is None and slow.failure is SendFailure.TIMEOUT
            never.set()  # let the receiver's handler finish so the server can stop
        async with running_receiver() as rec:
            refused = await guarded.send(rec.url, {}, b"{}", 5.0)
            assert (
                refused.failure is SendFailure.FORBIDDEN_TARGET
                and refused.error is not None
                and refused.error.startswith("forbidden_target")
            )
            assert rec.requests == []
    finally:
        never.set()
        await open_sender.close()
        await guarded.close()


async def test_a_dead_child_fails_what_it_held_and_is_replaced() -> None:
    """Killing the child mid-request answers that send with an error (retried later by the worker);
    the next send starts a new child and succeeds."""
    entered = asyncio.Event()
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response()

    sender = SenderProcess(allow_private=True)
    try:
        async with running_handler(hold) as base:
            pending = asyncio.create_task(sender.send(f"{base}/x", {}, b"{}", 10.0))
            await asyncio.wait_for(entered.wait(), 10)
            child = sender._child
            assert child is not None
            os.kill(child.proc.pid, signal.SIGKILL)
            result = await asyncio.wait_for(pending, 10)
            assert result.status is None and result.failure is SendFailure.NETWORK and result.detail == EXITED
            release.set()
        async with running_receiver() as rec:
            again = await sender.send(rec.url, {}, b"{}", 5.0)
            assert again.status == 200 and sender.starts == 2 and len(rec.requests) == 1
    finally:
        release.set()
        await sender.close()


async def test_close_ends_the_child_and_later_sends_fail() -> None:
    sender = SenderProcess(allow_private=True)
    await sender.start()
    child = sender._child
    assert child is not None
    await sender.close()
    assert child.proc.returncode == 0
    result = await sender.send("http://127.0.0.1:9/x", {}, b"{}", 1.0)
    assert result.failure is SendFailure.NETWORK and result.detail == EXITED


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def _raw_frame(head: bytes, body: bytes = b"") -> bytes:
    return struct.pack(">II", len(head), len(body)) + head + body


async def test_frames_round_trip_and_bad_frames_are_refused() -> None:
    """A frame reads back as sent (with its protocol version); truncated, oversized, non-object and
    other-version frames are refused."""
    frame = encode_frame({"i": 3, "u": "http://x/ü"}, b"\x00body")
    assert await read_frame(_reader(frame + frame)) == ({"p": PROTOCOL, "i": 3, "u": "http://x/ü"}, b"\x00body")
    assert await read_frame(_reader(b"")) is None
    with pytest.raises(ValueError, match="truncated"):
        await read_frame(_reader(frame[:-1]))
    with pytest.raises(ValueError, match="too large"):
        await read_frame(_reader(struct.pack(">II", 10**9, 0)))
    with pytest.raises(ValueError, match="not an object"):
        await read_frame(_reader(_raw_frame(b"[1, 2]")))
    with pytest.raises(ValueError, match="protocol"):
        await read_frame(_reader(_raw_frame(b'{"i": 1, "s": 200, "e": null}')))  # a version-1 reply


@pytest.mark.parametrize(
    "result",
    [
        TransportResult.answered(503, 12.5, retry_after=7.0, body=b"busy"),
        TransportResult.failed(SendFailure.TIMEOUT, 5000.0),
        TransportResult.failed(SendFailure.NETWORK, 1.0, EXITED),
        TransportResult.failed(SendFailure.FORBIDDEN_TARGET, 0.5, "10.0.0.1 is a private address"),
        TransportResult.failed(SendFailure.INTERNAL, 0.0, "KeyError"),
    ],
)
async def test_a_reply_crosses_the_pipe_typed(result: TransportResult) -> None:
    """What the child's transport returned is what the parent gets back: status, typed failure, detail, body."""
    head, body = await read_frame(_reader(encode_reply(9, result, with_body=True))) or ({}, b"")
    assert decode_reply(head, body) == (9, result)
    head, body = await read_frame(_reader(encode_reply(9, result, with_body=False))) or ({}, b"")
    assert decode_reply(head, body)[1].body == b""


async def test_a_request_crosses_the_pipe_typed() -> None:
    """A request reads back as sent, a GET included; one without a URL or with another method is refused."""
    for request in (
        SendRequest(4, "http://x/ü", {"webhook-id": "evt_1"}, 10.0, "POST", b"\x00{}"),
        SendRequest(5, "http://shop/notify?a=1", {}, 2.5, "GET"),
    ):
        frame = await read_frame(_reader(encode_request(request)))
        assert frame is not None and decode_request(*frame) == request
    with pytest.raises(ValueError, match="malformed"):
        decode_request({"p": PROTOCOL, "i": 1, "h": {}, "t": 1.0}, b"")
    with pytest.raises(ValueError, match="malformed"):
        decode_request({"p": PROTOCOL, "i": 1, "u": "http://x/", "h": {}, "t": 1.0, "v": "DELETE"}, b"")


async def test_an_unknown_failure_in_a_reply_is_a_protocol_error() -> None:
    """A reply naming a failure this side does not know is refused, not passed on as a string."""
    head, body = await read_frame(_reader(encode_frame({"i": 1, "s": None, "f": "teleported", "m": 1.0}))) or ({}, b"")
    with pytest.raises(ValueError):
        decode_reply(head, body)
