"""The alias IPs (VIPs: the public one and the optional private one, ``VipSet``): added with a short kernel
lifetime that the daemon keeps renewing, announced with gratuitous ARP, and probed with ARP before a takeover.

The lifetime is the dead man's switch: if the daemon is killed or its host frozen, nobody renews the address and
the kernel removes it ``vip_lifetime`` seconds after the last renewal (measured here: IPv4 lifetimes expire within
about 20 ms of the deadline), so a head whose daemon cannot act stops answering for the VIP on its own.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from haoscar.ha.config import NodeConfig
from haoscar.ha.netlink_addr import AddressWriter

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def arp_frame(op: int, src_mac: bytes, sender_ip: IPv4Address, target_ip: IPv4Address, dst: bytes = BROADCAST) -> bytes:
    eth = dst + src_mac + struct.pack("!H", ETH_P_ARP)
    target_mac = b"\x00" * 6 if op == 1 else dst
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + src_mac + sender_ip.packed + target_mac + target_ip.packed
    return eth + arp


def parse_arp(frame: bytes) -> tuple[int, bytes, IPv4Address, IPv4Address] | None:
    """(op, sender MAC, sender IP, target IP) of an Ethernet ARP frame for IPv4, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack_from("!HHBBH", frame, 14)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4:
        return None
    return op, frame[22:28], IPv4Address(frame[28:32]), IPv4Address(frame[38:42])


def format_mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class Vip:
    def __init__(self, ifname: str, address: IPv4Address, lifetime: int, own_ip: IPv4Address) -> None:
        self.ifname = ifname
        self.address = address
        self.lifetime = lifetime
        self.own_ip = own_ip
        self._tx: tuple[socket.socket, bytes] | None = None
        self._tx_lock = threading.Lock()
        self._writer = AddressWriter()

    def add(self) -> None:
        """Add or renew: ``replace`` resets the lifetimes to their full length. One netlink request on the calling
        thread (``netlink_addr``): on a takeover's critical path, a hop to the netlink thread cost 12-50 ms under
        load."""
        self._writer.replace(self.ifname, self.address, 32, self.lifetime)

    def remove(self) -> bool:
        """Drop the VIP; False when it was not there (e.g. expired). An interface that is gone raises OSError."""
        return self._writer.remove(self.ifname, self.address, 32)

    def present(self) -> bool:
        return self._writer.present(self.ifname, self.address)

    def close(self) -> None:
        self._writer.close()
        with self._tx_lock:
            if self._tx is not None:
                self._tx[0].close()
                self._tx = None

    # Packet sockets cost a kernel RCU grace period (``synchronize_net``, 10-30 ms on a busy host) when they are
    # closed and when an already receiving one is bound again. So: opened with protocol 0 (receiving nothing) and
    # bound once; the sender lives as long as the VIP object; the probe's receiver is closed off the event loop.
    def _socket(self, protocol: int) -> tuple[socket.socket, bytes]:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.bind((self.ifname, protocol))
        except BaseException:
            sock.close()
            raise
        mac = sock.getsockname()[4]
        return sock, bytes(mac)

    def _sender(self) -> tuple[socket.socket, bytes]:
        if self._tx is None:
            self._tx = self._socket(0)
        return self._tx

    def announce(self, count: int = 3, gap: float = 0.02) -> None:
        """Gratuitous ARP (sender = target = VIP), request and reply form, so caches and switches move at once."""
        with self._tx_lock:
            for attempt in (1, 2):
                sock, mac = self._sender()
                try:
                    sock.send(arp_frame(1, mac, self.address, self.address))
                    sock.send(arp_frame(2, mac, self.address, self.address))
                    break
                except OSError:
                    # the interface went away and came back (a new ifindex): open a fresh sender once
                    self._tx = None
                    sock.close()
                    if attempt == 2:
                        raise
        for _ in range(count - 1):
            time.sleep(gap)
            with self._tx_lock:
                sock, mac = self._sender()
                sock.send(arp_frame(1, mac, self.address, self.address))
                sock.send(arp_frame(2, mac, self.address, self.address))

    async def probe(self, timeout: float) -> str | None:
        """Ask who has the VIP; the MAC of another host that answers (it still holds the VIP), else None.

        On the event loop itself (a non-blocking raw socket), not in a thread: under CPU contention a thread hop
        cost more than the probe's own timeout. The timeout counts from the send; after the deadline the socket's
        queue is still read without blocking, so an answer that arrived in time but found the loop busy is never
        missed."""
        loop = asyncio.get_running_loop()
        sock, mac = self._socket(ETH_P_ARP)
        sock.setblocking(False)
        try:
            sock.send(arp_frame(1, mac, self.own_ip, self.address))
            # Counted from the moment the request has left: a daemon kept from the CPU before its send must not
            # eat the window in which the old owner's kernel answers.
            deadline = loop.time() + timeout
            late_reads = 64  # after the deadline: what is already queued, but a flood of ARP cannot keep us here
            while late_reads > 0:
                left = deadline - loop.time()
                try:
                    if left > 0:
                        frame = await asyncio.wait_for(loop.sock_recv(sock, 128), left)
                    else:
                        late_reads -= 1
                        frame = sock.recv(128)
                except TimeoutError:
                    continue  # the deadline passed: drain what is queued
                except BlockingIOError:
                    break
                parsed = parse_arp(frame)
                if parsed is None:
                    continue
                _op, sender_mac, sender_ip, _target = parsed
                if sender_ip == self.address and sender_mac != mac:
                    return format_mac(sender_mac)
        finally:
            loop.run_in_executor(None, sock.close)  # the close waits for a grace period: not on the event loop
        return None


class VipSet:
    """The public alias and, when the spec has one, the private alias (issue 11): added, renewed, probed, announced
    and dropped together, so compute nodes follow the active head under the same lease, kernel lifetime and
    gratuitous ARP as users on the public side. ``address`` is the public alias (what messages name)."""

    def __init__(self, vips: list[Vip]) -> None:
        self.vips = vips
        self.address = vips[0].address

    def add(self) -> None:
        for vip in self.vips:
            vip.add()

    def bring_up(self, step: Callable[[str], None] = lambda _step: None) -> None:
        """A takeover's add: each alias is announced (one gratuitous ARP) right after its own add, the public one
        first, so its clients move without waiting for the private alias's netlink request; ``step`` is told
        ``vip_added`` and ``garp_sent`` for the public alias (the takeover's timeline)."""
        public, *others = self.vips
        public.add()
        step("vip_added")
        public.announce(1)
        step("garp_sent")
        for vip in others:
            vip.add()
            vip.announce(1)

    def remove(self) -> bool:
        """Drop every alias (each one tried even when another fails); True when any was there."""
        removed, error = False, None
        for vip in self.vips:
            try:
                removed = vip.remove() or removed
            except Exception as exc:  # the first failure is raised once the others were dropped
                error = error or exc
        if error is not None:
            raise error
        return removed

    def present(self) -> bool:
        return any(vip.present() for vip in self.vips)

    def announce(self, count: int = 3, gap: float = 0.02) -> None:
        for round_ in range(count):
            if round_:
                time.sleep(gap)
            for vip in self.vips:
                vip.announce(1)

    async def probe(self, timeout: float) -> str | None:
        """Both aliases probed at once; the MAC of another host still answering for either, else None."""
        answers = await asyncio.gather(*(vip.probe(timeout) for vip in self.vips))
        return next((mac for mac in answers if mac is not None), None)

    def close(self) -> None:
        for vip in self.vips:
            vip.close()


def vips_for(cfg: NodeConfig) -> VipSet:
    """The aliases head ``cfg`` holds while active: the public one, and the private one when configured."""
    vips = [Vip(cfg.public_interface, cfg.vip, cfg.timings.vip_lifetime, cfg.public_ip)]
    if cfg.private_vip is not None and cfg.private_ip is not None:
        vips.append(Vip(cfg.private_interface, cfg.private_vip, cfg.timings.vip_lifetime, cfg.private_ip))
    return VipSet(vips)
