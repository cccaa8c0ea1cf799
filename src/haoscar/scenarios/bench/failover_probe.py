"""Probes that run inside a lab host and report, on the monotonic clock, who answers.

``icmp``: an ICMP echo to the alias IP every ``--interval`` (10 ms; the failover bench asks for 1 ms: a coarser
grid adds up to one interval to every failover, more than the differences it compares); every echo reply is
printed with the Ethernet source address of the frame that carried it, so the bench knows *which head* answered,
not just that somebody did; and every gratuitous ARP for the alias with the time it reached the client (what moves
the client's ARP cache, free of the echo grid). ``dhcp``: a full DHCP exchange (DISCOVER, OFFER, REQUEST, ACK)
repeated every ``--interval``; every ACK is printed with the server identifier, so the bench knows which head
served it.

Lab hosts share the machine's clock namespace, so CLOCK_MONOTONIC here is the same clock as ``time.monotonic()``
in the bench process: a reply time printed here minus the crash time taken there is the failover time.

Replies are read from an AF_PACKET socket rather than from the sending socket because only the link layer says
which head sent a frame; requests go out through ordinary sockets so that the kernel's ARP handling (and its
reaction to gratuitous ARP) is the one a real client would see.

Output, one line per event, flushed at once::

    READY <interface MAC>
    REPLY <monotonic s> <icmp seq> <source MAC>
    GARP <monotonic s> <sender MAC>
    ACK <monotonic s> <server identifier> <source MAC> <offered address>
    HEARD <monotonic s> <source IP>

``heard`` runs in the standby head and prints each heartbeat (haoscar: UDP to the heartbeat port; keepalived: a
VRRP advert, IP protocol 112) that arrives from the primary on any interface: the last one before the standby
takes over is where both contenders start counting their dead time, so "first reply minus last heard" times the
failover without the crash's random phase in it.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import secrets
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_HEADER = 14
ICMP_ECHO_REQUEST = 8
ICMP_ECHO_REPLY = 0
DHCP_MAGIC = b"\x63\x82\x53\x63"
DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPACK = 1, 2, 3, 5


@dataclass(frozen=True)
class Frame:
    """An IPv4 packet as seen on the wire: who sent the frame, and the IP header fields the probes need."""

    src_mac: str
    src_ip: str
    proto: int
    payload: bytes


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse_frame(frame: bytes) -> Frame | None:
    """The IPv4 packet of an Ethernet frame, or None for anything else (ARP, IPv6, truncated junk)."""
    if len(frame) < ETH_HEADER + 20 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    ip = frame[ETH_HEADER:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ihl < 20 or len(ip) < ihl:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    return Frame(mac_text(frame[6:12]), socket.inet_ntoa(ip[12:16]), ip[9], ip[ihl : max(ihl, total)])


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(int(word) for word in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    body = struct.pack("!d", time.monotonic())
    header = struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO_REQUEST, 0, checksum(header + body), ident, seq) + body


def echo_reply_seq(frame: Frame, target: str, ident: int) -> int | None:
    """The sequence number of an echo reply to us from ``target``, else None."""
    if frame.proto != socket.IPPROTO_ICMP or frame.src_ip != target or len(frame.payload) < 8:
        return None
    kind, _code, _sum, rid, seq = struct.unpack("!BBHHH", frame.payload[:8])
    if kind != ICMP_ECHO_REPLY or rid != ident:
        return None
    return int(seq)


def packet_socket(iface: str, protocol: int = ETH_P_IP) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    sock.bind((iface, protocol))
    sock.setblocking(False)
    return sock


def gratuitous_arp_sender(frame: bytes, address: bytes) -> str | None:
    """The sender MAC of a gratuitous ARP (request or reply, sender IP = target IP = ``address``), else None."""
    if len(frame) < ETH_HEADER + 28 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    arp = frame[ETH_HEADER : ETH_HEADER + 28]
    if arp[14:18] != address or arp[24:28] != address:
        return None
    return mac_text(arp[8:14])


def interface_mac(iface: str) -> str:
    """The interface's MAC, from the kernel of this network namespace (a lab host shares the machine's /sys, so
    /sys/class/net would describe the wrong interface)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as sock:
        sock.bind((iface, 0))
        return mac_text(sock.getsockname()[4])


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def drain(sock: socket.socket, handle: Callable[[bytes], None]) -> None:
    while True:
        try:
            data = sock.recv(65535)
        except (BlockingIOError, InterruptedError):
            return
        handle(data)


def run_ticks(
    interval: float,
    socks: list[socket.socket],
    tick: Callable[[], None],
    on_ready: Callable[[], None],
    lifeline: bool,
) -> None:
    """Call ``tick`` every ``interval`` seconds (catching up without bursts) and ``on_ready`` when sockets have
    data. With ``lifeline`` set, also return when stdin closes: the bench holds the other end of a pipe, so the
    probe ends with the bench even when a signal cannot reach it through nsenter."""
    stdin = sys.stdin.fileno()
    watch = [s.fileno() for s in socks]
    if lifeline:
        os.set_blocking(stdin, False)
        watch.append(stdin)
    next_tick = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= next_tick:
            tick()
            next_tick = max(next_tick + interval, now)
        ready, _, _ = select.select(watch, [], [], max(0.0, next_tick - time.monotonic()))
        if lifeline and stdin in ready:
            with contextlib.suppress(BlockingIOError):
                if not os.read(stdin, 4096):
                    return
        if any(s.fileno() in ready for s in socks):
            on_ready()


def probe_icmp(target: str, iface: str, interval: float, lifeline: bool = False) -> None:
    ident = os.getpid() & 0xFFFF
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sender.setblocking(False)
    receiver = packet_socket(iface)
    announcements = packet_socket(iface, ETH_P_ARP)
    packed = socket.inet_aton(target)
    seq = 0

    def tick() -> None:
        nonlocal seq
        seq = (seq + 1) & 0xFFFF
        with contextlib.suppress(OSError):  # no ARP answer yet (EHOSTUNREACH) while the VIP moves: keep probing
            sender.sendto(echo_request(ident, seq), (target, 0))

    def on_frame(data: bytes) -> None:
        frame = parse_frame(data)
        if frame is None:
            return
        got = echo_reply_seq(frame, target, ident)
        if got is not None:
            emit(f"REPLY {time.monotonic():.6f} {got} {frame.src_mac}")

    def on_arp(data: bytes) -> None:
        mac = gratuitous_arp_sender(data, packed)
        if mac is not None:
            emit(f"GARP {time.monotonic():.6f} {mac}")

    def on_ready() -> None:
        drain(receiver, on_frame)
        drain(announcements, on_arp)
        drain(sender, lambda _data: None)  # the raw ICMP socket sees every ICMP packet; keep its queue empty

    emit(f"READY {interface_mac(iface)}")
    run_ticks(interval, [receiver, announcements, sender], tick, on_ready, lifeline)


def dhcp_message(kind: int, xid: int, mac: bytes, options: dict[int, bytes]) -> bytes:
    """A BOOTREQUEST asking for broadcast replies, so an unconfigured client can hear them."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4, b"\0" * 4,
                        b"\0" * 4, b"\0" * 4, mac.ljust(16, b"\0"), b"", b"")  # fmt: skip
    opts = bytearray(DHCP_MAGIC)
    opts += bytes([53, 1, kind])
    for code, value in options.items():
        opts += bytes([code, len(value)]) + value
    opts += bytes([55, 2, 1, 3, 255])
    return fixed + bytes(opts)


def dhcp_options(payload: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    if payload[236:240] != DHCP_MAGIC:
        return options
    pos = 240
    while pos < len(payload):
        code = payload[pos]
        if code == 255:
            break
        if code == 0:
            pos += 1
            continue
        if pos + 1 >= len(payload):
            break
        length = payload[pos + 1]
        options[code] = payload[pos + 2 : pos + 2 + length]
        pos += 2 + length
    return options


@dataclass(frozen=True)
class DhcpReply:
    kind: int
    xid: int
    yiaddr: str
    server: str


def dhcp_reply(frame: Frame, mac: bytes) -> DhcpReply | None:
    """A BOOTREPLY for our hardware address carried in UDP to port 68, else None."""
    if frame.proto != socket.IPPROTO_UDP or len(frame.payload) < 8 + 240:
        return None
    if struct.unpack("!H", frame.payload[2:4])[0] != 68:
        return None
    bootp = frame.payload[8:]
    if bootp[0] != 2 or bootp[28:34] != mac:
        return None
    options = dhcp_options(bootp)
    kind = options.get(53, b"\0")[0]
    server = options.get(54)
    if server is None or len(server) != 4:
        return None
    xid = struct.unpack("!I", bootp[4:8])[0]
    return DhcpReply(kind, int(xid), socket.inet_ntoa(bootp[16:20]), socket.inet_ntoa(server))


def probe_dhcp(iface: str, interval: float, lifeline: bool = False) -> None:
    mac = bytes.fromhex(interface_mac(iface).replace(":", ""))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sender.bind(("0.0.0.0", 68))
    sender.setblocking(False)
    receiver = packet_socket(iface)
    recent: list[int] = []  # replies to the last few DISCOVERs still count: a slow server is still a server

    def send(kind: int, xid: int, options: dict[int, bytes]) -> None:
        with contextlib.suppress(OSError):  # no route or no address yet: the next tick tries again
            sender.sendto(dhcp_message(kind, xid, mac, options), ("255.255.255.255", 67))

    def tick() -> None:
        xid = secrets.randbits(32)
        recent.append(xid)
        del recent[:-20]
        send(DHCPDISCOVER, xid, {})

    def on_frame(data: bytes) -> None:
        frame = parse_frame(data)
        reply = None if frame is None else dhcp_reply(frame, mac)
        if frame is None or reply is None or reply.xid not in recent:
            return
        if reply.kind == DHCPOFFER:
            request = {50: socket.inet_aton(reply.yiaddr), 54: socket.inet_aton(reply.server)}
            send(DHCPREQUEST, reply.xid, request)
        elif reply.kind == DHCPACK:
            emit(f"ACK {time.monotonic():.6f} {reply.server} {frame.src_mac} {reply.yiaddr}")

    def on_ready() -> None:
        drain(receiver, on_frame)
        drain(sender, lambda _data: None)

    emit(f"READY {interface_mac(iface)}")
    run_ticks(interval, [receiver, sender], tick, on_ready, lifeline)


def udp_destination(frame: Frame) -> int | None:
    return struct.unpack("!H", frame.payload[2:4])[0] if frame.proto == 17 and len(frame.payload) >= 4 else None


def probe_heard(sources: set[str], proto: int, port: int | None, lifeline: bool) -> None:
    """Print every packet from ``sources`` with IP protocol ``proto`` (and UDP destination ``port``) that arrives on
    any interface of this host (a packet socket bound to none receives from all)."""
    receiver = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    receiver.setblocking(False)

    def on_frame(data: bytes) -> None:
        frame = parse_frame(data)
        if frame is None or frame.src_ip not in sources or frame.proto != proto:
            return
        if port is None or udp_destination(frame) == port:
            emit(f"HEARD {time.monotonic():.6f} {frame.src_ip}")

    emit("READY any")
    run_ticks(1.0, [receiver], lambda: None, lambda: drain(receiver, on_frame), lifeline)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m haoscar.scenarios.bench.failover_probe", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    icmp = sub.add_parser("icmp", help="ping an address every interval and print who answers")
    icmp.add_argument("--target", required=True, type=ipaddress.IPv4Address)
    icmp.add_argument("--iface", required=True)
    icmp.add_argument("--interval", type=float, default=0.01)
    dhcp = sub.add_parser("dhcp", help="run DHCP exchanges every interval and print which server acknowledges")
    dhcp.add_argument("--iface", required=True)
    dhcp.add_argument("--interval", type=float, default=0.05)
    heard = sub.add_parser("heard", help="print each heartbeat (advert) that arrives from the given addresses")
    heard.add_argument("--source", required=True, action="append", type=ipaddress.IPv4Address)
    heard.add_argument("--proto", required=True, type=int)
    heard.add_argument("--port", type=int, default=None)
    for sub_parser in (icmp, dhcp, heard):
        sub_parser.add_argument("--lifeline", action="store_true", help="exit when stdin closes")
    args = parser.parse_args(argv)
    try:
        if args.kind == "icmp":
            probe_icmp(str(args.target), args.iface, args.interval, args.lifeline)
        elif args.kind == "heard":
            probe_heard({str(a) for a in args.source}, args.proto, args.port, args.lifeline)
        else:
            probe_dhcp(args.iface, args.interval, args.lifeline)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"failover_probe: {exc}", file=sys.stderr)
        return 1
    return 0


# --- the bench side: start a probe in a lab host and read what it reports -------------------------------------


@dataclass(frozen=True)
class ProbeEvent:
    """One line of a probe: an echo reply (``who`` = the replying MAC) or a DHCP ACK (``who`` = the server id)."""

    kind: str
    t: float
    who: str
    mac: str


def parse_line(line: str) -> ProbeEvent | None:
    parts = line.split()
    try:
        if parts[0] == "REPLY" and len(parts) >= 4:
            return ProbeEvent("REPLY", float(parts[1]), parts[3], parts[3])
        if parts[0] == "ACK" and len(parts) >= 4:
            return ProbeEvent("ACK", float(parts[1]), parts[2], parts[3])
        if parts[0] == "GARP" and len(parts) >= 3:
            return ProbeEvent("GARP", float(parts[1]), parts[2], parts[2])
        if parts[0] == "HEARD" and len(parts) >= 3:
            return ProbeEvent("HEARD", float(parts[1]), parts[2], "")
    except (IndexError, ValueError):
        return None
    return None


def icmp_argv(target: str, iface: str, interval: float = 0.01) -> list[str]:
    return [sys.executable, "-m", "haoscar.scenarios.bench.failover_probe", "icmp",
            "--target", target, "--iface", iface, "--interval", f"{interval:g}", "--lifeline"]  # fmt: skip


def dhcp_argv(iface: str, interval: float = 0.05) -> list[str]:
    return [sys.executable, "-m", "haoscar.scenarios.bench.failover_probe", "dhcp", "--iface", iface,
            "--interval", f"{interval:g}", "--lifeline"]  # fmt: skip


def heard_argv(sources: list[str], proto: int, port: int | None) -> list[str]:
    argv = [sys.executable, "-m", "haoscar.scenarios.bench.failover_probe", "heard", "--proto", str(proto)]
    argv += [arg for source in sources for arg in ("--source", source)]
    return argv + (["--port", str(port)] if port is not None else []) + ["--lifeline"]


class ProbeStream:
    """The events of a probe process, collected by a reader thread; ``wait`` blocks until one matches."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.ready: str | None = None
        self.events: list[ProbeEvent] = []
        self._cond = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._read, name="probe-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = parse_line(line)
            with self._cond:
                if line.startswith("READY "):
                    self.ready = line.split()[1]
                elif event is not None:
                    self.events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait(self, match: Callable[[ProbeEvent], bool], timeout: float) -> ProbeEvent | None:
        """The first event (oldest first) that ``match`` accepts, waiting up to ``timeout``; None if none came."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for event in self.events[seen:]:
                    if match(event):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0 or self._ended:
                    return None
                self._cond.wait(left)

    def close(self) -> None:
        """Close the lifeline (the probe exits), and make sure it did: terminate, then kill, by pid."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=2)
        self._thread.join(timeout=2)
        if self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
