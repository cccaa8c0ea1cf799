"""The boot server's listener: it accepts connections itself and hands each one to aiohttp, so it can count them.

aiohttp's own sites accept every connection (no cap), and its per-connection timers know nothing of the others.
Here every accepted connection is counted, in all and per client address:

- over ``per_client``, the new connection is reset at once (before a byte is read);
- over ``max_connections``, the connection that has waited longest without a request under way is closed to make
  room (an idle or slowloris connection, never one receiving its kernel or image); when every connection is busy
  with a request, the new one is reset;
- aiohttp closes a connection that has no complete request head ``idle_timeout`` after it opened, or after its
  last answer (``keepalive_timeout``), so a connection that sends nothing or trickles its head is cut on time.

A node's request is sent right after its connection opens, so a flood, even from many addresses, does not keep a
real node out: its connection is the newest when the next one arrives, and busy once its request is read.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from haoscar.provision.bootserver_limits import BootLimits

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class GateCounters:
    accepted: int = 0
    refused: int = 0  # reset at once: over the per-client cap, or every connection busy
    evicted: int = 0  # idle connections closed to make room for a new one


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, wrapped so the gate hears when it ends (all calls pass through)."""

    def __init__(self, gate: Gate, inner: asyncio.Protocol, peer: str) -> None:
        self.gate, self.inner, self.peer = gate, inner, peer
        self.transport: asyncio.Transport | None = None
        self.busy = 0  # requests under way (read, not yet fully answered)
        self.since = time.monotonic()  # opened, or its last answer finished

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.gate.opened(self)
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.closed(self)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _NotFromTheWire(logging.Filter):
    """Drops aiohttp's traceback for a malformed or oversized request: a peer chose it, and a flood of them would
    flood the log. A fault of the server itself (a handler's exception) is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], HttpProcessingError))


def http_logger() -> logging.Logger:
    logger = logging.getLogger("haoscar.bootserver.http")
    if not logger.filters:
        logger.addFilter(_NotFromTheWire())
    return logger


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST: no FIN_WAIT, no linger
    conn.close()


def listening_socket(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.create_server((address, port), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


class Gate:
    def __init__(self, limits: BootLimits) -> None:
        self.limits = limits
        self.counters = GateCounters()
        self.by_client: Counter[str] = Counter()
        self.conns: dict[asyncio.BaseTransport, _Counted] = {}
        self._listeners: list[socket.socket] = []
        self._acceptors: list[asyncio.Task[None]] = []

    # ---- the connection table -------------------------------------------------------------------------------

    def opened(self, conn: _Counted) -> None:
        assert conn.transport is not None
        self.conns[conn.transport] = conn
        self.by_client[conn.peer] += 1

    def closed(self, conn: _Counted) -> None:
        if conn.transport is not None and self.conns.pop(conn.transport, None) is not None:
            self.by_client[conn.peer] -= 1
            if self.by_client[conn.peer] <= 0:
                del self.by_client[conn.peer]

    def _make_room(self) -> bool:
        """Close the connection idle longest (no request under way); False when every one is busy."""
        idle = [c for c in self.conns.values() if c.busy == 0 and c.transport is not None]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.since)
        assert victim.transport is not None
        victim.transport.abort()
        self.closed(victim)  # counted out now: abort() reports connection_lost only on the next loop turn
        self.counters.evicted += 1
        return True

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Mark the connection busy while its request is answered, the whole answer included (a kernel is sent
        after the handler returns: it is sent here, so the connection stays busy until the last byte)."""
        conn = self.conns.get(request.transport) if request.transport is not None else None
        if conn is None:
            return await handler(request)
        conn.busy += 1
        try:
            response = await handler(request)
            if not response.prepared:
                await response.prepare(request)
                await response.write_eof()
            return response
        finally:
            conn.busy -= 1
            conn.since = time.monotonic()

    # ---- listening ------------------------------------------------------------------------------------------

    def sockets(self) -> list[tuple[str, int]]:
        """The addresses and ports listened on (the port the system chose when asked for 0)."""
        return [sock.getsockname()[:2] for sock in self._listeners]

    async def start(self, server: Callable[[], asyncio.Protocol], addresses: list[str], port: int) -> None:
        """Listen on ``addresses``; every accepted connection is served by a protocol from ``server``."""
        try:
            for address in addresses:
                self._listeners.append(listening_socket(address, port))
        except BaseException:
            self.stop()
            raise
        self._acceptors = [asyncio.ensure_future(self._accept(sock, server)) for sock in self._listeners]

    def stop(self) -> None:
        """Stop accepting (connections already open are left to aiohttp's shutdown)."""
        for task in self._acceptors:
            task.cancel()
        for sock in self._listeners:
            sock.close()
        self._listeners.clear()

    async def _accept(self, listener: socket.socket, server: Callable[[], asyncio.Protocol]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, addr = await loop.sock_accept(listener)
            except OSError:  # out of descriptors for a moment: breathe, try again
                await asyncio.sleep(0.05)
                continue
            peer = str(addr[0])
            if self.by_client[peer] >= self.limits.per_client or (
                len(self.conns) >= self.limits.max_connections and not self._make_room()
            ):
                self.counters.refused += 1
                _reset(conn)
                continue
            self.counters.accepted += 1
            try:
                await loop.connect_accepted_socket(functools.partial(_Counted, self, server(), peer), conn)
            except OSError:
                conn.close()
