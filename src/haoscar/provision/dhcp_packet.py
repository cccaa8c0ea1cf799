"""Parsing DHCP client messages off the wire (RFC 2131 BOOTP + RFC 2132 options), for MAC collection.

Everything from the network is untrusted: every length is checked, and a truncated or garbage frame raises
:class:`BadPacket` (counted and skipped by the collector), never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTP_FIXED = 236  # op .. file, before the magic cookie
ETH_HEADER = 14
ETH_P_IP = 0x0800
ETH_P_8021Q = 0x8100
DHCP_SERVER_PORT = 67

MESSAGE_TYPES = {
    1: "DISCOVER",
    2: "OFFER",
    3: "REQUEST",
    4: "DECLINE",
    5: "ACK",
    6: "NAK",
    7: "RELEASE",
    8: "INFORM",
}
# RFC 4578 client system architecture (option 93), the values PXE firmware sends.
CLIENT_ARCHES = {0: "bios", 6: "efi-ia32", 7: "efi-x64", 9: "efi-x64", 10: "efi-arm32", 11: "efi-arm64"}

OPT_PAD, OPT_END = 0, 255
OPT_MESSAGE_TYPE, OPT_USER_CLASS, OPT_CLIENT_ARCH, OPT_HOSTNAME = 53, 77, 93, 12
OPT_OVERLOAD = 52


class BadPacket(ValueError):
    """A frame that is not a well-formed DHCP client message."""


class NotDhcp(BadPacket):
    """Other traffic (not IPv4/UDP to port 67): not DHCP at all, so not counted as a bad packet."""


@dataclass(frozen=True)
class DhcpRequest:
    """What MAC collection learns from one client message."""

    mac: str
    message_type: str
    client_arch: str = ""
    user_class: str = ""
    hostname: str = ""
    xid: int = 0


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def parse_options(data: bytes) -> dict[int, bytes]:
    """TLV options up to END; repeated options are concatenated (RFC 3396)."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return options
        if i + 1 >= len(data):
            raise BadPacket(f"option {code} has no length byte")
        length = data[i + 1]
        end = i + 2 + length
        if end > len(data):
            raise BadPacket(f"option {code} claims {length} bytes, only {len(data) - i - 2} left")
        options[code] = options.get(code, b"") + data[i + 2 : end]
        i = end
    raise BadPacket("options do not end with END (255)")


def _user_class(raw: bytes) -> str:
    """RFC 3004 length-prefixed classes; iPXE and some firmware send a bare string instead."""
    parts: list[str] = []
    i = 0
    while i < len(raw):
        length = raw[i]
        if length == 0 or i + 1 + length > len(raw):
            return raw.decode("ascii", errors="replace")
        parts.append(raw[i + 1 : i + 1 + length].decode("ascii", errors="replace"))
        i += 1 + length
    return ",".join(parts)


def parse_bootp(payload: bytes) -> DhcpRequest:
    """A BOOTP/DHCP message (the UDP payload) from a client: BOOTREQUEST, Ethernet, with a DHCP message type."""
    if len(payload) < BOOTP_FIXED + len(MAGIC_COOKIE):
        raise BadPacket(f"{len(payload)} bytes is too short for a DHCP message (at least 240)")
    op, htype, hlen = payload[0], payload[1], payload[2]
    if op != 1:
        raise BadPacket(f"op {op} is not BOOTREQUEST (1)")
    if htype != 1 or hlen != 6:
        raise BadPacket(f"hardware type {htype}/length {hlen} is not Ethernet (1/6)")
    (xid,) = struct.unpack_from("!I", payload, 4)
    chaddr = payload[28:34]
    if payload[BOOTP_FIXED : BOOTP_FIXED + 4] != MAGIC_COOKIE:
        raise BadPacket("no DHCP magic cookie: a plain BOOTP request")
    options = parse_options(payload[BOOTP_FIXED + 4 :])
    kind = options.get(OPT_MESSAGE_TYPE)
    if kind is None or len(kind) != 1:
        raise BadPacket("no DHCP message type (option 53)")
    message_type = MESSAGE_TYPES.get(kind[0], f"type-{kind[0]}")
    arch = ""
    raw_arch = options.get(OPT_CLIENT_ARCH)
    if raw_arch is not None and len(raw_arch) >= 2:
        code = struct.unpack_from("!H", raw_arch)[0]
        arch = CLIENT_ARCHES.get(code, f"arch-{code}")
    user_class = _user_class(options[OPT_USER_CLASS]) if OPT_USER_CLASS in options else ""
    hostname = options.get(OPT_HOSTNAME, b"").decode("ascii", errors="replace")
    if chaddr[0] & 1:
        raise BadPacket(f"client hardware address {_mac_text(chaddr)} is multicast")
    return DhcpRequest(_mac_text(chaddr), message_type, arch, user_class, hostname, xid)


def parse_frame(frame: bytes) -> DhcpRequest:
    """An Ethernet frame carrying IPv4/UDP to port 67 with a DHCP client message."""
    if len(frame) < ETH_HEADER:
        raise BadPacket("frame shorter than an Ethernet header")
    offset = 12
    (ethertype,) = struct.unpack_from("!H", frame, offset)
    if ethertype == ETH_P_8021Q:
        if len(frame) < ETH_HEADER + 4:
            raise BadPacket("truncated VLAN header")
        offset += 4
        (ethertype,) = struct.unpack_from("!H", frame, offset)
    if ethertype != ETH_P_IP:
        raise NotDhcp(f"ethertype {ethertype:#06x} is not IPv4")
    ip_start = offset + 2
    if len(frame) < ip_start + 20:
        raise BadPacket("truncated IPv4 header")
    version_ihl = frame[ip_start]
    if version_ihl >> 4 != 4:
        raise NotDhcp("not IPv4")
    ihl = (version_ihl & 0x0F) * 4
    if ihl < 20 or frame[ip_start + 9] != 17:
        raise NotDhcp("not UDP")
    (fragment,) = struct.unpack_from("!H", frame, ip_start + 6)
    if fragment & 0x3FFF:
        raise BadPacket("IPv4 fragment")
    udp_start = ip_start + ihl
    if len(frame) < udp_start + 8:
        raise BadPacket("truncated UDP header")
    _src_port, dst_port, udp_length = struct.unpack_from("!HHH", frame, udp_start)
    if dst_port != DHCP_SERVER_PORT:
        raise NotDhcp(f"UDP port {dst_port} is not 67")
    if udp_length < 8 or udp_start + udp_length > len(frame):
        raise BadPacket("UDP length runs past the frame")
    return parse_bootp(frame[udp_start + 8 : udp_start + udp_length])


def build_request(
    mac: str,
    message_type: int = 1,
    *,
    xid: int = 0x1234,
    client_arch: int | None = None,
    user_class: bytes | None = None,
    hostname: str | None = None,
) -> bytes:
    """A client's DHCP message as the UDP payload: used by tests and ``mac collect``'s self-check."""
    chaddr = bytes(int(part, 16) for part in mac.split(":"))
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"", b"", b"", b"", chaddr, b"", b"")
    options = bytes([OPT_MESSAGE_TYPE, 1, message_type])
    if client_arch is not None:
        options += bytes([OPT_CLIENT_ARCH, 2]) + struct.pack("!H", client_arch)
    if user_class is not None:
        options += bytes([OPT_USER_CLASS, len(user_class)]) + user_class
    if hostname is not None:
        options += bytes([OPT_HOSTNAME, len(hostname)]) + hostname.encode()
    return fixed + MAGIC_COOKIE + options + bytes([OPT_END])


def build_frame(payload: bytes, src_mac: str) -> bytes:
    """Wrap a DHCP payload the way a client broadcasts it: Ethernet / IPv4 0.0.0.0 -> 255.255.255.255 / UDP 68->67."""
    udp = struct.pack("!HHHH", 68, 67, 8 + len(payload), 0) + payload
    total = 20 + len(udp)
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0, 64, 17, 0, b"\0" * 4, b"\xff" * 4)
    checksum = _ip_checksum(header)
    header = header[:10] + struct.pack("!H", checksum) + header[12:]
    eth = b"\xff" * 6 + bytes(int(p, 16) for p in src_mac.split(":")) + struct.pack("!H", ETH_P_IP)
    return eth + header + udp


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
