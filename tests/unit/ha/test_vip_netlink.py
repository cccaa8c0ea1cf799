"""The VIP is added with one hand-built ``RTM_NEWADDR`` request (``ha/netlink_addr.py``): what it says to the
kernel, and how its acknowledgement is read."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from haoscar.ha.netlink_addr import (
    IFA_ADDRESS,
    IFA_CACHEINFO,
    IFA_LOCAL,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_ERROR,
    RTM_NEWADDR,
    ack_error,
    newaddr_message,
)


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while offset < len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        found[kind] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def test_the_request_replaces_the_address_with_both_lifetimes_on_the_interface() -> None:
    data = newaddr_message(7, index=3, address=IPv4Address("198.19.0.10"), prefixlen=32, lifetime=1)
    length, kind, flags, seq, port = struct.unpack_from("=IHHII", data)
    assert (length, kind, seq, port) == (len(data), RTM_NEWADDR, 7, 0)
    # create or replace, acknowledged: ``ip addr replace`` (an existing address gets its lifetimes reset)
    assert flags == NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE
    family, prefixlen, _flags, scope, index = struct.unpack_from("=BBBBI", data, 16)
    assert (family, prefixlen, scope, index) == (2, 32, 0, 3)  # AF_INET, /32, global scope, interface 3
    attrs = attributes(data, 24)
    assert attrs[IFA_LOCAL] == attrs[IFA_ADDRESS] == bytes([198, 19, 0, 10])
    preferred, valid, _cstamp, _tstamp = struct.unpack("=IIII", attrs[IFA_CACHEINFO])
    assert (preferred, valid) == (1, 1)  # the dead man's switch: the kernel drops it 1 s after the last renewal


def ack(seq: int, error: int) -> bytes:
    return struct.pack("=IHHII", 36, NLMSG_ERROR, 0, seq, 0) + struct.pack("=i", error) + b"\0" * 16


def test_the_acknowledgement_of_our_request_gives_its_errno() -> None:
    assert ack_error(ack(7, 0), 7) == 0
    assert ack_error(ack(7, -19), 7) == 19  # ENODEV: the interface went away
    # an acknowledgement of an older request (one that timed out) is not ours; nothing: keep reading
    assert ack_error(ack(6, 0), 7) is None
    assert ack_error(ack(6, -17) + ack(7, 0), 7) == 0
    assert ack_error(b"", 7) is None
