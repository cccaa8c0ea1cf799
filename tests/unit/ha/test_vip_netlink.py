"""The VIP is added, removed and looked up with hand-built rtnetlink requests (``ha/netlink_addr.py``; the daemon
no longer loads pyroute2): what they say to the kernel, and how the answers are read."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from haoscar.ha.netlink_addr import (
    IFA_ADDRESS,
    IFA_CACHEINFO,
    IFA_LOCAL,
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_MULTI,
    NLM_F_REPLACE,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    RTM_DELADDR,
    RTM_GETADDR,
    RTM_NEWADDR,
    ack_error,
    deladdr_message,
    dump_addresses,
    getaddr_message,
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


def test_the_removal_names_the_address_on_the_interface_and_asks_for_an_acknowledgement() -> None:
    data = deladdr_message(9, index=4, address=IPv4Address("198.18.0.3"), prefixlen=32)
    length, kind, flags, seq, _port = struct.unpack_from("=IHHII", data)
    assert (length, kind, flags, seq) == (len(data), RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, 9)
    family, prefixlen, _flags, _scope, index = struct.unpack_from("=BBBBI", data, 16)
    assert (family, prefixlen, index) == (2, 32, 4)
    attrs = attributes(data, 24)
    assert attrs[IFA_LOCAL] == attrs[IFA_ADDRESS] == bytes([198, 18, 0, 3])


def address_message(seq: int, index: int, address: str) -> bytes:
    attr = struct.pack("=HH", 8, IFA_LOCAL) + IPv4Address(address).packed
    body = struct.pack("=BBBBI", 2, 32, 0, 0, index) + attr
    return struct.pack("=IHHII", 16 + len(body), RTM_NEWADDR, NLM_F_MULTI, seq, 0) + body


def test_a_dump_answer_gives_each_address_with_its_interface_until_done() -> None:
    request = getaddr_message(5)
    _length, kind, flags, seq, _port = struct.unpack_from("=IHHII", request)
    assert (kind, flags & NLM_F_DUMP, seq) == (RTM_GETADDR, NLM_F_DUMP, 5)
    part = address_message(5, 2, "198.18.0.1") + address_message(5, 3, "198.19.0.10")
    assert dump_addresses(part, 5) == ([(2, IPv4Address("198.18.0.1")), (3, IPv4Address("198.19.0.10"))], False)
    done = struct.pack("=IHHII", 20, NLMSG_DONE, NLM_F_MULTI, 5, 0) + b"\0" * 4
    assert dump_addresses(address_message(5, 3, "198.18.0.3") + done, 5) == ([(3, IPv4Address("198.18.0.3"))], True)
    # the answer to an older request (one that timed out) is not this dump's
    assert dump_addresses(address_message(4, 3, "198.18.0.3"), 5) == ([], False)
