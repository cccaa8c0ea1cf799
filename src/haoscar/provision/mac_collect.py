"""Collecting MAC addresses from the wire (OSCAR's Collect MAC Address; Warewulf's discoverable nodes).

A raw AF_PACKET socket on the private interface sees every DHCP DISCOVER / REQUEST, also those dnsmasq ignores
(in static mode an unknown MAC gets no answer at all). Unknown MACs are recorded in ``mac_sightings`` in order of
arrival; with ``auto`` each new one is bound at once to the next compute node without a MAC (in natural name
order) and that node's DHCP entry is synced, so its next DISCOVER gets an answer.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import select as sql_select
from sqlalchemy import update

from haoscar.db.models import Interface, MacSighting, Node, utcnow
from haoscar.errors import FieldError, NeedsRoot
from haoscar.provision.dhcp_packet import BadPacket, DhcpRequest, NotDhcp, parse_frame
from haoscar.provision.netboot_macs import Assignment, assign_macs
from haoscar.provision.netboot_snapshot import Database
from haoscar.provision.netboot_sync import netboot_sync
from haoscar.spec.nodes import sorted_nodes

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOCKET_BUFFER = 1 << 20


class FrameSource(Protocol):
    def receive(self, timeout: float) -> bytes | None:
        """The next incoming frame, or None when ``timeout`` seconds pass without one."""

    def close(self) -> None: ...


class PacketSocket:
    """Incoming frames of one interface through AF_PACKET (needs CAP_NET_RAW)."""

    def __init__(self, interface: str) -> None:
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise NeedsRoot("mac collect listens on a raw socket; run it as root") from None
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            self._sock.bind((interface, 0))
        except OSError as exc:
            self._sock.close()
            detail = f"cannot listen on interface {interface!r} ({exc.strerror}); see `ip link`"
            raise FieldError("interface", detail, sep=None) from None

    def receive(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                return None
            frame, address = self._sock.recvfrom(65535)
            if address[2] != PACKET_OUTGOING:  # our own DHCP replies are not client messages
                return frame

    def close(self) -> None:
        self._sock.close()


@dataclass(frozen=True)
class Seen:
    """One client message from a MAC no node owns, as the live table shows it."""

    request: DhcpRequest
    new: bool
    seen_count: int
    assigned_to: str | None = None


@dataclass
class CollectResult:
    interface: str
    seconds: float = 0.0
    frames: int = 0
    bad_packets: int = 0
    known: int = 0
    sightings: list[Seen] = field(default_factory=list)
    assigned: list[Assignment] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "interface": self.interface,
            "seconds": round(self.seconds, 3),
            "frames": self.frames,
            "bad_packets": self.bad_packets,
            "known_requests": self.known,
            "new_macs": [s.request.mac for s in self.sightings if s.new],
            "sightings": [
                {
                    "mac": s.request.mac,
                    "message_type": s.request.message_type,
                    "client_arch": s.request.client_arch,
                    "user_class": s.request.user_class,
                    "new": s.new,
                    "seen_count": s.seen_count,
                    "assigned_to": s.assigned_to,
                }
                for s in self.sightings
            ],
            "assigned": [a.as_dict() for a in self.assigned],
        }


def _record(db: Database, request: DhcpRequest, interface: str) -> tuple[bool, int] | None:
    """Record a sighting of an unknown MAC; None when a node already owns the MAC."""
    with db.session() as session:
        if session.execute(sql_select(Interface.id).where(Interface.mac == request.mac)).first() is not None:
            return None
        row = session.scalars(sql_select(MacSighting).where(MacSighting.mac == request.mac)).first()
        if row is None:
            session.add(
                MacSighting(
                    mac=request.mac,
                    interface=interface,
                    message_type=request.message_type,
                    client_arch=request.client_arch,
                )
            )
            return True, 1
        session.execute(
            update(MacSighting)
            .where(MacSighting.id == row.id)
            .values(last_seen=utcnow(), seen_count=MacSighting.seen_count + 1, message_type=request.message_type)
        )
        return False, row.seen_count + 1


def next_free_node(db: Database) -> str | None:
    """The first compute node (ClusterShell's order) whose private interface has no MAC."""
    with db.session() as session:
        names = session.scalars(
            sql_select(Node.name)
            .join(Interface, Interface.node_id == Node.id)
            .where(Node.role == "compute", Interface.network == "private", Interface.mac.is_(None))
        ).all()
    return sorted_nodes(names)[0] if names else None


def collect(
    db: Database,
    state_dir: Path,
    interface: str,
    *,
    timeout: float,
    auto: bool = False,
    source: FrameSource | None = None,
    on_seen: Callable[[Seen], None] | None = None,
    stop_after: int | None = None,
) -> CollectResult:
    """Listen ``timeout`` seconds (or until ``stop_after`` new MACs) and record unknown MACs in order of arrival."""
    frames = source or PacketSocket(interface)
    result = CollectResult(interface)
    started = time.monotonic()
    try:
        while True:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                break
            frame = frames.receive(left)
            if frame is None:
                break
            result.frames += 1
            try:
                request = parse_frame(frame)
            except NotDhcp:
                continue
            except BadPacket:
                result.bad_packets += 1
                continue
            if request.message_type not in ("DISCOVER", "REQUEST"):
                continue
            recorded = _record(db, request, interface)
            if recorded is None:
                result.known += 1
                continue
            new, count = recorded
            assigned_to: str | None = None
            if new and auto:
                node = next_free_node(db)
                if node is not None:
                    result.assigned += assign_macs(db, [(node, request.mac, f"mac collect --auto {request.mac}")])
                    netboot_sync(db, state_dir, nodes={node})
                    assigned_to = node
            seen = Seen(request, new, count, assigned_to)
            result.sightings.append(seen)
            if on_seen is not None:
                on_seen(seen)
            if stop_after is not None and sum(1 for s in result.sightings if s.new) >= stop_after:
                break
    finally:
        frames.close()
    result.seconds = time.monotonic() - started
    return result
