"""Who owns the VIP, sampled every 10 ms in a lab: which head has it configured (on an up link), what the public
client's ARP cache says, and every ARP packet that speaks for it (tests and the failover demo read the timeline).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute

from haoscar.ha.vip import ETH_P_ARP, format_mac, parse_arp
from haoscar.lab.names import NETNS_DIR
from haoscar.lab.nsenter import setns
from haoscar.scenarios.ha_lab import HaLab

CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class Sample:
    t: float
    configured: frozenset[str]  # heads with the VIP on their public interface
    reachable: frozenset[str]  # ... on an interface that is up: they answer for it
    client_owner: str | None  # whose MAC the public client's ARP cache holds for the VIP


@dataclass(frozen=True)
class ArpSeen:
    t: float
    mac: str
    head: str | None
    op: int


def in_netns(name: str, make: Any) -> Any:
    """Run ``make()`` with this thread inside network namespace ``name`` (setns is per thread), then return."""
    result: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with open(f"{NETNS_DIR}/{name}") as target:
                setns(target.fileno(), CLONE_NEWNET)
            result.append(make())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)  # a throwaway thread: its namespace dies with it
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class OwnerSampler:
    """Every ``period`` seconds: which head has the VIP (and on an up link), and what the public client's ARP
    cache says; meanwhile every ARP packet on the client's side that speaks for the VIP is recorded."""

    def __init__(self, ha: HaLab, client: str | None = None, period: float = 0.01) -> None:
        self.ha = ha
        self.period = period
        self.vip = ha.vip
        self.heads = [ha.primary, ha.standby]
        self.client = client or (ha.spec.lab.client.hostname if ha.spec.lab.client else None)
        self.samples: list[Sample] = []
        self.arp: list[ArpSeen] = []
        self._stop = threading.Event()
        self._ipr = {head: IPRoute(netns=ha.lab.netns(head), flags=0, groups=0) for head in self.heads}
        self._public = {head: self._public_if(head) for head in self.heads}
        self._macs = {self._mac(head): head for head in self.heads}
        self._client_ipr = IPRoute(netns=ha.lab.netns(self.client), flags=0, groups=0) if self.client else None
        self._arp_sock: socket.socket | None = None
        if self.client:
            iface = next(i.name for i in ha.lab.host(self.client).interfaces if i.network == "public")

            def make() -> socket.socket:
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
                sock.bind((iface, ETH_P_ARP))
                sock.settimeout(0.2)
                return sock

            self._arp_sock = in_netns(ha.lab.netns(self.client), make)
        self._threads = [threading.Thread(target=self._run, name="haoscar-owner-sampler", daemon=True)]
        if self._arp_sock is not None:
            self._threads.append(threading.Thread(target=self._watch_arp, name="haoscar-arp-watch", daemon=True))

    def _public_if(self, head: str) -> str:
        heads = self.ha.spec.heads
        return heads.primary.public_interface if head == self.ha.primary else heads.standby.public_interface

    def _mac(self, head: str) -> str:
        ipr = self._ipr[head]
        link = ipr.get_links(ifname=self._public_if(head))[0]
        return str(link.get("IFLA_ADDRESS"))

    def __enter__(self) -> OwnerSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        # Each sample stands until the next one: without a closing sample the state the background thread saw
        # last would count for nothing, and on a busy machine that thread may not run again before the stop (a
        # two-owner state held until then measured 0 s).
        if not self._threads[0].is_alive():
            self.samples.append(self.sample_once())
        for ipr in [*self._ipr.values(), self._client_ipr]:
            if ipr is not None:
                ipr.close()
        if self._arp_sock is not None:
            self._arp_sock.close()

    def _holds(self, head: str) -> tuple[bool, bool]:
        """(the VIP is configured on the head, and its public link is up)."""
        ipr = self._ipr[head]
        try:
            if not ipr.get_addr(address=self.vip):
                return False, False
            link = ipr.get_links(ifname=self._public[head])[0]
            return True, bool(link["flags"] & 1 and link.get("IFLA_OPERSTATE") in ("UP", "UNKNOWN"))
        except Exception:
            return False, False

    def sample_once(self) -> Sample:
        # The heads are read one after the other, a few ms apart: a handover that completes between the two reads
        # (the old head read before it dropped the VIP, the new one after it added it) would look like two owners.
        # So two owners count only when the first head, read again after the second, still holds the VIP: then
        # it held it throughout, including the instant the second was read (a head never re-adds the VIP within
        # milliseconds of dropping it).
        configured, reachable = set(), set()
        for head in self.heads:
            has, up = self._holds(head)
            if has:
                configured.add(head)
            if up:
                reachable.add(head)
        if len(configured) >= 2:
            first = self.heads[0]
            has, up = self._holds(first)
            if not has:
                configured.discard(first)
            if not up:
                reachable.discard(first)
        owner = None
        if self._client_ipr is not None:
            with contextlib.suppress(Exception):
                for neigh in self._client_ipr.get_neighbours(dst=self.vip):
                    mac = neigh.get("NDA_LLADDR")
                    owner = self._macs.get(str(mac), str(mac) if mac else None)
        return Sample(time.monotonic(), frozenset(configured), frozenset(reachable), owner)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self.samples.append(self.sample_once())
            next_at += self.period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def _watch_arp(self) -> None:
        assert self._arp_sock is not None
        vip = self.vip
        while not self._stop.is_set():
            try:
                frame = self._arp_sock.recv(128)
            except (TimeoutError, OSError):
                continue
            parsed = parse_arp(frame)
            if parsed is None:
                continue
            op, sender_mac, sender_ip, _target = parsed
            if str(sender_ip) == vip:
                mac = format_mac(sender_mac)
                self.arp.append(ArpSeen(time.monotonic(), mac, self._macs.get(mac), op))

    # -- results ------------------------------------------------------------------------------------------
    def double_ownership_s(self, since: float = 0.0) -> float:
        """Total time two heads answered for the VIP at once (each sample counts until the next one)."""
        total = 0.0
        samples = [s for s in self.samples if s.t >= since]
        for first, second in itertools.pairwise(samples):
            if len(first.reachable) >= 2:
                total += second.t - first.t
        return total

    def max_owners(self, since: float = 0.0) -> int:
        return max((len(s.reachable) for s in self.samples if s.t >= since), default=0)

    def first_owned_by(self, head: str, since: float) -> float | None:
        return next((s.t for s in self.samples if s.t >= since and head in s.reachable), None)

    def last_owned_by(self, head: str) -> float | None:
        return next((s.t for s in reversed(self.samples) if head in s.reachable), None)

    def announced_by(self, head: str, since: float) -> list[ArpSeen]:
        return [a for a in self.arp if a.t >= since and a.head == head]
