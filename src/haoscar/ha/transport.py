"""The heartbeat transport: one UDP endpoint per shared network, signed packets out, verified packets in.

Sequence numbers are per packet and shared with the lease client (one counter per daemon life), so the replay
window and the peer's acknowledgements see one ordered stream. Every rejected packet is counted per reason.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

from haoscar.events import EventBus
from haoscar.ha.config import Link, NodeConfig
from haoscar.ha.keyset import KeySet
from haoscar.ha.peer import DropCounters, SentLog
from haoscar.ha.replay import ReplayWindow, admit
from haoscar.ha.wire import KIND_HEARTBEAT, Rejected, encode
from haoscar.keyring import Keyring

# asyncio's datagram transport reads one datagram per socket per turn of the event loop, and a timer that fell due
# during a stall runs in the same turn: after a stall of the dead time, the tick would see the peer silent while
# its heartbeats wait in the socket. ``HeartbeatTransport.drain`` reads them first.
DRAIN_LIMIT = 256
MAX_DATAGRAM = 65536


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[bytes, Any], None], sock: socket.socket | None = None) -> None:
        self.on_packet = on_packet
        self.transport: asyncio.DatagramTransport | None = None
        self.sock = sock  # the bound socket itself, so that ``drain`` can read what the loop has not yet

    def drain(self, limit: int = DRAIN_LIMIT) -> int:
        """Deliver the datagrams the kernel already queued for this socket (at most ``limit``: a flood of bad
        packets must not hold the caller); how many."""
        count = 0
        for _ in range(limit if self.sock is not None else 0):
            assert self.sock is not None
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # an error queued on the socket (a link was cut): nothing to deliver, try the next
                continue
            count += 1
            self.on_packet(data, addr)
        return count

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint always gets a DatagramTransport (isinstance fails on the selector's private class).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_packet(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable while a link is cut: expected
        pass

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Packets:
    """Signing and verification shared by heartbeats and lease requests: the sequence counter, the replay window,
    the drop counters."""

    def __init__(self, keys: KeySet, bus: EventBus, incarnation: int) -> None:
        self.keys = keys  # heartbeats: the heartbeat keyring; witness requests and replies: the lease keyring
        self.bus = bus
        self.incarnation = incarnation  # this life of the daemon (ha/incarnation.py): the peer's window restarts
        self.seq = 0
        self.sent = SentLog()
        self.replay = ReplayWindow()
        self.drops = DropCounters()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def accept(self, data: bytes, kind: int, senders: tuple[str, ...]) -> dict[str, Any] | None:
        """The body of a valid, fresh packet of ``kind`` from one of ``senders``; None (counted) otherwise."""
        try:
            return admit(data, self.keyring(kind), kind, senders, self.replay).body
        except Rejected as exc:
            self.drop(exc.reason)
            return None

    def keyring(self, kind: int) -> Keyring:
        return self.keys["heartbeat" if kind == KIND_HEARTBEAT else "lease"]

    def drop(self, reason: str) -> None:
        self.drops.drop(reason)
        count = self.drops.counts[reason]
        if count in (1, 10, 100, 1000) or count % 10000 == 0:  # visible, but a flood cannot flood the log
            self.bus.event("packet.dropped", f"dropped a {reason} packet ({count} so far)", "warning", reason=reason)


class HeartbeatTransport:
    """Heartbeats to the peer on every shared network; ``on_heartbeat(network, body)`` for each verified one."""

    def __init__(self, cfg: NodeConfig, packets: Packets, on_heartbeat: Callable[[str, dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.packets = packets
        self.on_heartbeat = on_heartbeat
        self.endpoints: dict[str, Endpoint] = {}

    async def bind(self) -> None:
        for link in self.cfg.links:
            self.endpoints[link.network] = await self._bind(link)

    async def _bind(self, link: Link) -> Endpoint:
        loop = asyncio.get_running_loop()

        def on_packet(data: bytes, addr: Any, network: str = link.network) -> None:
            body = self.packets.accept(data, KIND_HEARTBEAT, (self.cfg.peer_name,))
            if body is not None:
                self.on_heartbeat(network, body)

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((str(link.local), self.cfg.port))
        except OSError:
            sock.close()
            raise
        _, proto = await loop.create_datagram_endpoint(lambda: Endpoint(on_packet, sock), sock=sock)
        return proto

    def drain(self) -> int:
        """Deliver every heartbeat the kernel has queued and the event loop not yet read; how many. Called before a
        decision about the peer's silence, so that a stall of this daemon is never taken for one of the peer."""
        return sum(endpoint.drain() for endpoint in self.endpoints.values())

    def send(self, body_common: dict[str, Any], now: float) -> None:
        for link in self.cfg.links:
            endpoint = self.endpoints.get(link.network)
            if endpoint is None or endpoint.transport is None:
                continue
            seq = self.packets.next_seq()
            self.packets.sent.record(seq, now)
            data = encode(
                KIND_HEARTBEAT, {**body_common, "seq": seq, "net": link.network}, self.packets.keyring(KIND_HEARTBEAT)
            )
            endpoint.transport.sendto(data, (str(link.peer), self.cfg.port))

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.close()
