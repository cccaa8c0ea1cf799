"""The public side's health: is the public link up, and which ping targets answer (keepalived's
``track_interface``, Pacemaker's ping agent).

One round every ``ping_interval`` seconds: read the public interface's operational state and send one ICMP echo to
each ``ha.ping_targets`` address (a raw socket bound to the public interface, read on the event loop: no process
per ping, no thread). A target, or the link, counts as lost only after ``ping_failures`` consecutive failed
rounds, and as back at its first success: one lost ping does nothing.

The result is a score, Pacemaker style: 0 with the link lost, else 1 + the targets that answer. Each head sends
its score in its heartbeats; ``decide`` hands the role over when the active head's score is below its standby's
(the pure rule is in ``ha/decide.py``). Nothing here changes a role.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path

ICMP_ECHO, ICMP_ECHO_REPLY = 8, 0
# Operational states of a link that carries nothing (``/sys/class/net/IF/operstate``).
_DOWN = frozenset({"down", "lowerlayerdown", "notpresent", "dormant"})


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    payload = b"haoscar-ping"
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(header + payload), ident, seq) + payload


def parse_reply(packet: bytes, ident: int) -> tuple[IPv4Address, int] | None:
    """(source, sequence) of an ICMP echo reply to us in a raw IPv4 packet, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8:
        return None
    kind, _code, _sum, got_ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    if kind != ICMP_ECHO_REPLY or got_ident != ident:
        return None
    return IPv4Address(packet[12:16]), seq


def link_up(ifname: str, sys_net: Path = Path("/sys/class/net")) -> bool:
    try:
        state = (sys_net / ifname / "operstate").read_text().strip()
    except OSError:
        return False  # the interface is gone
    return state not in _DOWN


class PublicHealth:
    """The public side's score, kept current by a task on the daemon's event loop (``start``)."""

    def __init__(
        self,
        ifname: str,
        targets: tuple[IPv4Address, ...],
        failures: int,
        interval: float,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.ifname = ifname
        self.targets = targets
        self.failures = failures
        self.interval = interval
        self.on_change = on_change
        self.link_misses = 0
        self.misses = dict.fromkeys(targets, 0)
        self._answered: set[IPv4Address] = set()
        self._ident = os.getpid() & 0xFFFF
        self._seq = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def max_score(self) -> int:
        return 1 + len(self.targets)

    @property
    def link_lost(self) -> bool:
        return self.link_misses >= self.failures

    @property
    def unreachable(self) -> list[IPv4Address]:
        return [target for target, misses in self.misses.items() if misses >= self.failures]

    @property
    def score(self) -> int:
        """0 when the link is lost, else 1 + the targets that answer (a target is lost after ``failures``)."""
        if self.link_lost:
            return 0
        return 1 + len(self.targets) - len(self.unreachable)

    def record(self, link: bool, answered: set[IPv4Address]) -> bool:
        """One round's result; True when the score changed (pure: the unit tests feed rounds here)."""
        before = self.score
        self.link_misses = 0 if link else self.link_misses + 1
        for target in self.targets:
            self.misses[target] = 0 if target in answered else self.misses[target] + 1
        return self.score != before

    def start(self) -> None:
        """Start the rounds (once); the task ends with the event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="haoscar-public-health")

    async def _run(self) -> None:
        sock = self._socket() if self.targets else None
        loop = asyncio.get_running_loop()
        if sock is not None:
            loop.add_reader(sock.fileno(), self._read, sock)
        try:
            while True:
                self._send(sock)
                await asyncio.sleep(self.interval)
                answered, self._answered = self._answered, set()
                if self.record(link_up(self.ifname), answered) and self.on_change is not None:
                    self.on_change()
        finally:
            if sock is not None:
                loop.remove_reader(sock.fileno())
                sock.close()

    def _socket(self) -> socket.socket | None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        except OSError:
            return None  # not root: every target counts as unreachable, which the score shows
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # pings leave by the public side only, never around it
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.ifname.encode())
        return sock

    def _send(self, sock: socket.socket | None) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        if sock is None:
            return
        packet = echo_request(self._ident, self._seq)
        for target in self.targets:
            with contextlib.suppress(OSError):  # a link that is down: no route, the round counts it
                sock.sendto(packet, (str(target), 0))

    def _read(self, sock: socket.socket) -> None:
        for _ in range(64):
            try:
                packet = sock.recv(2048)
            except (BlockingIOError, OSError):
                return
            reply = parse_reply(packet, self._ident)
            if reply is not None and reply[1] == self._seq and reply[0] in self.misses:
                self._answered.add(reply[0])

    def as_dict(self) -> dict[str, object]:
        return {
            "score": self.score,
            "max_score": self.max_score,
            "link": "lost" if self.link_lost else "up",
            "unreachable": [str(target) for target in self.unreachable],
        }
