"""The webhook sender process: outbound HTTP on a second core.

The bridge's event loop shares one GIL with its database thread; the HTTP client work of sending
webhooks (building requests, parsing responses, socket calls) is a large share of what that loop
does per payment. `SenderProcess` is a `WebhookTransport` that hands each send to a child process
(`python -m bridge.sender`) over its stdin and reads the result back from its stdout; the child
runs the same `AiohttpTransport` (SSRF guard, no redirects, 64 KiB response cap) on its own core.

Nothing durable lives in the child: the delivery worker still decides what to send, signs it and
records every outcome in the bridge's database. If the child dies, the sends it had in hand come
back as failed attempts (`SendFailure.NETWORK`, "webhook sender exited"), are retried on schedule
with the same `webhook-id`, and the next send starts a new child. At-least-once, as before.

Frames (both directions): a 4-byte big-endian length of a JSON head, a 4-byte length of a raw body,
the head, the body. Every head carries the protocol version `"p": 2`; a head of another version is
a protocol error (parent and child come from one install, so this only catches a stale child).
Request head: `{"p": 2, "i": id, "u": url, "h": headers, "t": timeout}` (plus `"v": "GET"` for a
compat notify); the body is the webhook payload. Reply head: `{"p": 2, "i": id, "s": status,
"r": retry_after, "f": failure, "d": detail, "m": elapsed_ms}`, where `f` is a `SendFailure` value
or null; the body is empty for a webhook and the response body (at most 64 KiB) for a GET, whose
ack is in it. `SendRequest` with `encode_request` / `decode_request`, and `TransportResult` with
`encode_reply` / `decode_reply`, are the two ends of each direction, typed on both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from bridge.core import codec
from bridge.errors import SendFailure
from bridge.transport import AiohttpTransport, TransportResult

__all__ = [
    "EXITED",
    "PROTOCOL",
    "SendRequest",
    "SenderProcess",
    "decode_head",
    "decode_reply",
    "decode_request",
    "encode_frame",
    "encode_reply",
    "encode_request",
    "main",
    "read_frame",
]

log = structlog.get_logger("bridge.webhooks")

_LENGTHS = struct.Struct(">II")
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
GRACE_S = 5.0  # beyond the HTTP timeout before the parent gives up on an answer from the child
EXITED = "webhook sender exited"  # the detail of a NETWORK failure for sends the child took down with it
PROTOCOL = 2  # the version every frame head carries ("p")


def encode_frame(head: dict[str, Any], body: bytes = b"") -> bytes:
    raw = codec.dumpb({"p": PROTOCOL, **head})
    return _LENGTHS.pack(len(raw), len(body)) + raw + body


def decode_head(raw: bytes) -> dict[str, Any]:
    head = codec.loads(raw)
    if not isinstance(head, dict):
        raise ValueError("frame head is not an object")
    if head.get("p") != PROTOCOL:
        raise ValueError(f"frame of protocol {head.get('p')!r}, expected {PROTOCOL}")
    return head


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One send the parent asks of the child."""

    id: int
    url: str
    headers: dict[str, str]
    timeout: float
    method: str = "POST"  # or GET: a compat notify, whose response body comes back
    body: bytes = b""


def encode_request(request: SendRequest) -> bytes:
    head: dict[str, Any] = {"i": request.id, "u": request.url, "h": request.headers, "t": request.timeout}
    if request.method != "POST":
        head["v"] = request.method
    return encode_frame(head, request.body)


def decode_request(head: dict[str, Any], body: bytes) -> SendRequest:
    """A request from a frame; ValueError if malformed."""
    try:
        headers, method = head["h"], str(head.get("v") or "POST")
        if not isinstance(headers, dict) or method not in ("POST", "GET"):
            raise ValueError("bad headers or method")
        return SendRequest(
            int(head["i"]), str(head["u"]), {str(k): str(v) for k, v in headers.items()}, float(head["t"]), method, body
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed request: {e!r}") from None


def encode_reply(request_id: int, result: TransportResult, *, with_body: bool) -> bytes:
    """The child's answer to request `request_id` (the response body only when asked: a GET's ack)."""
    head = {
        "i": request_id,
        "s": result.status,
        "r": result.retry_after,
        "f": None if result.failure is None else result.failure.value,
        "d": result.detail,
        "m": result.elapsed_ms,
    }
    return encode_frame(head, result.body if with_body else b"")


def decode_reply(head: dict[str, Any], body: bytes) -> tuple[int, TransportResult]:
    """(request id, result) from a reply frame; ValueError (an unknown failure too) or KeyError if malformed."""
    status, retry_after, failure = head.get("s"), head.get("r"), head.get("f")
    result = TransportResult(
        None if status is None else int(status),
        None if retry_after is None else float(retry_after),
        None if failure is None else SendFailure(failure),
        float(head.get("m") or 0.0),
        body,
        str(head.get("d") or ""),
    )
    return int(head["i"]), result


def _exited(elapsed_ms: float = 0.0) -> TransportResult:
    return TransportResult.failed(SendFailure.NETWORK, elapsed_ms, EXITED)


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes] | None:
    """The next frame, or None at a clean end of stream."""
    try:
        prefix = await reader.readexactly(_LENGTHS.size)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise ValueError("truncated frame") from None
        return None
    head_len, body_len = _LENGTHS.unpack(prefix)
    if head_len > MAX_HEAD or body_len > MAX_BODY:
        raise ValueError("frame too large")
    try:
        head = decode_head(await reader.readexactly(head_len))
        body = await reader.readexactly(body_len)
    except asyncio.IncompleteReadError:
        raise ValueError("truncated frame") from None
    return head, body


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pending: dict[int, asyncio.Future[TransportResult]] = {}
        self.reader: asyncio.Task[None] | None = None
        self.alive = True


class SenderProcess:
    """A `WebhookTransport` backed by a child process; started on first use (or by `start()`)."""

    def __init__(self, *, allow_private: bool, argv: Sequence[str] | None = None) -> None:
        self._argv = list(argv or [sys.executable, "-m", "bridge.sender"])
        if allow_private:
            self._argv.append("--allow-private")
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._ids = itertools.count(1)
        self._closed = False
        self.starts = 0  # children started, for tests and logs

    async def start(self) -> None:
        await self._ensure()

    async def _ensure(self) -> _Child:
        child = self._child
        if child is not None and child.alive:
            return child
        async with self._starting:
            child = self._child
            if child is not None and child.alive:
                return child
            proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            child = _Child(proc)
            child.reader = asyncio.create_task(self._read_replies(child), name="webhook-sender-replies")
            self._child = child
            self.starts += 1
            log.info("webhook.sender_started", pid=proc.pid)
            return child

    async def _read_replies(self, child: _Child) -> None:
        assert child.proc.stdout is not None
        try:
            while True:
                frame = await read_frame(child.proc.stdout)
                if frame is None:
                    break
                request_id, result = decode_reply(*frame)
                fut = child.pending.pop(request_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(result)
        except (ValueError, KeyError, TypeError) as e:
            log.error("webhook.sender_protocol_error", error=repr(e))
            # Only here: killing a child that already closed its output could reap it behind
            # asyncio's back (Popen.send_signal polls first).
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
        finally:
            child.alive = False
            for fut in child.pending.values():
                if not fut.done():
                    fut.set_result(_exited())
            child.pending.clear()
            await child.proc.wait()
            if not self._closed:
                log.warning("webhook.sender_exited", pid=child.proc.pid, returncode=child.proc.returncode)

    async def send(
        self, url: str, headers: dict[str, str], body: bytes, timeout: float, *, method: str = "POST"
    ) -> TransportResult:
        if self._closed:
            return _exited()
        started = time.perf_counter()
        child = await self._ensure()
        assert child.proc.stdin is not None
        request_id = next(self._ids)
        fut: asyncio.Future[TransportResult] = asyncio.get_running_loop().create_future()
        child.pending[request_id] = fut
        try:
            child.proc.stdin.write(encode_request(SendRequest(request_id, url, headers, timeout, method, body)))
            await child.proc.stdin.drain()
            async with asyncio.timeout(timeout + GRACE_S):
                return await fut
        except (ConnectionError, BrokenPipeError):
            return _exited((time.perf_counter() - started) * 1000)
        except TimeoutError:
            return TransportResult.failed(SendFailure.TIMEOUT, (time.perf_counter() - started) * 1000)
        finally:
            child.pending.pop(request_id, None)

    async def close(self) -> None:
        """Stop the child: it finishes what it holds, answers, and exits on end of input."""
        self._closed = True
        child, self._child = self._child, None
        if child is None:
            return
        if child.proc.stdin is not None:
            with contextlib.suppress(ConnectionError, BrokenPipeError):
                child.proc.stdin.close()
        try:
            async with asyncio.timeout(GRACE_S):
                await child.proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
        if child.reader is not None:
            await child.reader


async def _serve(allow_private: bool) -> None:
    """The child: read requests from stdin, send each concurrently, write replies to stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_HEAD + MAX_BODY)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    w_transport, w_protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout.buffer)
    writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)
    transport = AiohttpTransport(allow_private=allow_private)
    tasks: set[asyncio.Task[None]] = set()

    async def one(request: SendRequest) -> None:
        try:
            result = await transport.send(
                request.url, request.headers, request.body, request.timeout, method=request.method
            )
        except Exception as e:  # never leave the parent waiting on a request id
            result = TransportResult.failed(SendFailure.INTERNAL, 0.0, type(e).__name__)
        writer.write(encode_reply(request.id, result, with_body=request.method != "POST"))

    try:
        while True:
            frame = await read_frame(reader)
            if frame is None:
                break
            task = asyncio.create_task(one(decode_request(*frame)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        await writer.drain()
    finally:
        await transport.close()
        writer.close()


def main(argv: Sequence[str] | None = None) -> int:
    from bridge.logs import configure_logging

    parser = argparse.ArgumentParser(prog="python -m bridge.sender", description="Paybridge webhook sender (a child)")
    parser.add_argument("--allow-private", action="store_true")
    args = parser.parse_args(argv)
    configure_logging("json", "warning")
    # Ctrl-C reaches the whole process group: the child ignores it and ends when the bridge closes
    # its input (also when the bridge is killed), after answering what it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_serve(args.allow_private))
    except (ValueError, BrokenPipeError, ConnectionError) as e:
        log.error("webhook.sender_failed", error=repr(e))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
