"""``failover_probe heard``: which frames count as the primary's heartbeats (adverts), and how the bench reads them."""

from __future__ import annotations

import socket
import struct

from haoscar.scenarios.bench.failover_probe import (
    gratuitous_arp_sender,
    heard_argv,
    parse_frame,
    parse_line,
    udp_destination,
)


def ip_frame(src: str, proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                         socket.inet_aton(src), socket.inet_aton("198.18.1.2"))  # fmt: skip
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + header + payload


def test_a_heartbeat_is_udp_to_the_port_and_an_advert_is_vrrp() -> None:
    heartbeat = parse_frame(ip_frame("198.18.1.1", 17, struct.pack("!HHHH", 40000, 7404, 8, 0)))
    advert = parse_frame(ip_frame("198.18.1.1", 112, b"\x31" + b"\0" * 7))
    assert heartbeat is not None and udp_destination(heartbeat) == 7404 and heartbeat.src_ip == "198.18.1.1"
    assert advert is not None and advert.proto == 112 and udp_destination(advert) is None


def test_the_bench_reads_heard_lines_and_asks_for_every_source() -> None:
    event = parse_line("HEARD 1234.500000 198.18.1.1\n")
    assert event is not None and (event.kind, event.t, event.who) == ("HEARD", 1234.5, "198.18.1.1")
    argv = heard_argv(["198.18.1.1", "198.18.2.1"], 17, 7404)
    assert argv[-7:] == ["--source", "198.18.1.1", "--source", "198.18.2.1", "--port", "7404", "--lifeline"]


def arp_frame(op: int, sender_mac: bytes, sender_ip: str, target_ip: str) -> bytes:
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender_mac, socket.inet_aton(sender_ip),
                       b"\0" * 6, socket.inet_aton(target_ip))  # fmt: skip
    return b"\xff" * 6 + sender_mac + b"\x08\x06" + body


def test_only_a_gratuitous_arp_for_the_alias_counts_as_the_new_owners_announcement() -> None:
    vip, mac = socket.inet_aton("198.19.0.10"), b"\x52\x54\x00\x00\x00\x02"
    assert gratuitous_arp_sender(arp_frame(1, mac, "198.19.0.10", "198.19.0.10"), vip) == "52:54:00:00:00:02"
    assert gratuitous_arp_sender(arp_frame(2, mac, "198.19.0.10", "198.19.0.10"), vip) == "52:54:00:00:00:02"
    assert gratuitous_arp_sender(arp_frame(1, mac, "198.19.0.2", "198.19.0.10"), vip) is None  # a probe for it
    assert gratuitous_arp_sender(arp_frame(1, mac, "198.19.0.11", "198.19.0.11"), vip) is None  # another address
    assert gratuitous_arp_sender(ip_frame("198.19.0.10", 1, b"\0" * 8), vip) is None  # not ARP
    assert gratuitous_arp_sender(arp_frame(1, mac, "198.19.0.10", "198.19.0.10")[:30], vip) is None  # truncated
    event = parse_line("GARP 12.250000 52:54:00:00:00:02\n")
    assert event is not None and (event.kind, event.t, event.who) == ("GARP", 12.25, "52:54:00:00:00:02")
