"""A small HTTP/1.1 server for the head's status and API listeners, built for strangers on the wire: caps on
connections (in all and per client address), one request per connection (no idle keep-alive), a deadline for the
TLS handshake plus the whole request, size limits on the request head and body, and a deadline for the answer.

Why not aiohttp's server here: it keeps idle connections open (keep-alive, lingering), has no connection cap and
no deadline for a request head that trickles in (slowloris); the four routes we serve need none of its features.
A connection over a cap is closed at once (before TLS), so a flood costs a file descriptor for microseconds only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from haoscar.tlsca import accepted_streams, listening_socket


@dataclass(frozen=True)
class Limits:
    max_connections: int = 64  # open connections in all; more are closed at once
    per_client: int = 4  # open connections from one address
    header_bytes: int = 8 * 1024  # request line + headers
    body_bytes: int = 4 * 1024
    read_timeout: float = 5.0  # TLS handshake + the whole request, from accept
    handler_timeout: float = 30.0  # a switchover waits for replication to drain (5 s) and more
    write_timeout: float = 5.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: bytes
    peer: str


@dataclass
class Response:
    status: int
    body: Any  # sent as JSON
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]

_REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 411: "Length Required", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
    504: "Gateway Timeout",
}  # fmt: skip


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Counters:
    accepted: int = 0
    refused_cap: int = 0  # closed at once: over the total or per-client cap
    timed_out: int = 0
    bad: int = 0  # failed TLS handshakes, malformed or oversized requests


class CappedServer:
    def __init__(self, handler: Handler, limits: Limits | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.tls = tls
        self.active = 0
        self.by_client: Counter[str] = Counter()
        self.counters = Counters()
        self._listeners: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []
        self._handlers: set[asyncio.Task[None]] = set()
        self._answering: set[asyncio.Task[None]] = set()  # the request was read: the answer is being made

    async def start(self, addresses: list[str], port: int) -> None:
        try:
            for address in addresses:
                self._listeners.append(listening_socket(address, port))
        except BaseException:
            await self.close()
            raise
        self._acceptors = [asyncio.ensure_future(self._accept(sock)) for sock in self._listeners]

    async def close(self, grace: float = 0.0) -> None:
        """Stop listening; connections still sending their request are cut at once, requests being answered get
        up to ``grace`` seconds (a switchover asked through this API demotes the head, which stops this listener:
        the answer must still reach the client)."""
        for task in self._acceptors:
            task.cancel()
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()
        for task in self._handlers - self._answering:
            task.cancel()
        if self._answering and grace > 0:
            await asyncio.wait(list(self._answering), timeout=grace)
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._acceptors, *self._handlers, return_exceptions=True)

    async def _accept(self, listener: socket.socket) -> None:
        # Accepted here, not by asyncio's server, so a connection over a cap is refused before a byte is read and
        # the TLS handshake starts on a socket nothing has read from.
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(listener)
            except OSError:  # out of descriptors, or the listener closed: breathe, try again
                await asyncio.sleep(0.05)
                continue
            peer = str(addr[0])
            if self.active >= self.limits.max_connections or self.by_client[peer] >= self.limits.per_client:
                self.counters.refused_cap += 1
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST, no wait
                conn.close()
                continue
            self.counters.accepted += 1
            self.active += 1
            self.by_client[peer] += 1
            task = asyncio.ensure_future(self._handle(conn, peer))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _handle(self, conn: socket.socket, peer: str) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            writer = await self._serve(conn, peer)
        finally:
            task = asyncio.current_task()
            if task is not None:
                self._answering.discard(task)
            self.active -= 1
            self.by_client[peer] -= 1
            if self.by_client[peer] <= 0:
                del self.by_client[peer]
            if writer is not None:
                _abort(writer)
            conn.close()

    async def _serve(self, conn: socket.socket, peer: str) -> asyncio.StreamWriter | None:
        limits = self.limits
        writer = None
        try:
            async with asyncio.timeout(limits.read_timeout):
                reader, writer = await accepted_streams(conn, self.tls, limits.header_bytes, limits.read_timeout)
                request = await _read_request(reader, peer, limits)
        except TimeoutError:
            self.counters.timed_out += 1
            return writer
        except _BadRequest as exc:
            self.counters.bad += 1
            if writer is not None:
                await self._send(writer, Response(exc.status, {"error": str(exc)}))
            return writer
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
            self.counters.bad += 1
            return writer
        task = asyncio.current_task()
        if task is not None:
            self._answering.add(task)
        try:
            async with asyncio.timeout(limits.handler_timeout):
                response = await self.handler(request)
        except TimeoutError:
            response = Response(504, {"error": f"no answer within {limits.handler_timeout:g} s"})
        except Exception as exc:  # a handler bug answers 500; it never takes the server down
            response = Response(500, {"error": f"{type(exc).__name__}: {exc}"})
        await self._send(writer, response)
        return writer

    async def _send(self, writer: asyncio.StreamWriter, response: Response) -> None:
        body = json.dumps(response.body, default=str).encode()
        head = [f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Status')}"]
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), "Connection": "close"}
        head += [f"{k}: {v}" for k, v in {**headers, **response.headers}.items()]
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(self.limits.write_timeout):
                writer.write("\r\n".join(head).encode() + b"\r\n\r\n" + body)
                await writer.drain()
                if self.tls is not None:
                    writer.close()  # a TLS close_notify, so the client knows the body is complete
                    await writer.wait_closed()


def _abort(writer: asyncio.StreamWriter) -> None:
    # A TLS connection lost during its handshake leaves the writer without a transport (Python 3.11).
    transport: asyncio.BaseTransport | None = writer.transport
    if transport is not None and isinstance(transport, asyncio.WriteTransport):
        transport.abort()


async def _read_request(reader: asyncio.StreamReader, peer: str, limits: Limits) -> Request:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise _BadRequest(431, f"the request head is over {limits.header_bytes} bytes") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "not an HTTP/1.x request line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise _BadRequest(400, "a malformed header line")
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise _BadRequest(411, "send the body with a Content-Length, not chunked")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _BadRequest(400, "Content-Length is not a number") from None
    if length < 0 or length > limits.body_bytes:
        raise _BadRequest(413, f"the body may have {limits.body_bytes} bytes at most")
    body = await reader.readexactly(length) if length else b""
    url = urlsplit(parts[1])
    return Request(parts[0].upper(), url.path, dict(parse_qsl(url.query)), headers, body, peer)
