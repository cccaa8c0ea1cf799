"""Add (or renew) one IPv4 address with a kernel lifetime: one rtnetlink request on the caller's own thread.

The VIP is added on a takeover's critical path and renewed every heartbeat. pyroute2's synchronous ``IPRoute``
runs an event loop of its own, so ``Vip`` had to call it from a worker thread: a thread hop plus an interface
lookup and the address request, two netlink round trips. A takeover measured 12-50 ms for that step on a loaded
2-core machine (the worker thread and the event loop waiting for a CPU and the GIL in turn). This module sends the
one ``RTM_NEWADDR`` message itself and reads its acknowledgement; the kernel handles the request inside ``send``,
so the acknowledgement is queued when ``send`` returns and nothing waits for another thread.
"""

from __future__ import annotations

import os
import socket
import struct
from ipaddress import IPv4Address

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
NLMSG_ERROR = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_REPLACE = 0x100
NLM_F_CREATE = 0x400
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_CACHEINFO = 6
_NLMSG = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def newaddr_message(seq: int, index: int, address: IPv4Address, prefixlen: int, lifetime: int) -> bytes:
    """``ip addr replace ADDRESS/PREFIXLEN dev INDEX valid_lft LIFETIME preferred_lft LIFETIME`` as one message
    (what pyroute2's ``addr("replace", ...)`` sends: create or replace, lifetimes reset to their full length)."""
    body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, address.packed) + _attr(IFA_ADDRESS, address.packed)
    body += _attr(IFA_CACHEINFO, struct.pack("=IIII", lifetime, lifetime, 0, 0))
    flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_NEWADDR, flags, seq, 0) + body


def ack_error(data: bytes, seq: int) -> int | None:
    """The errno of the acknowledgement of request ``seq`` in ``data`` (0: done), None when ``data`` holds none."""
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, got, _port = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            return None
        if kind == NLMSG_ERROR and got == seq and offset + _NLMSG.size + 4 <= len(data):
            error: int = struct.unpack_from("=i", data, offset + _NLMSG.size)[0]
            return -error
        offset += (length + 3) & ~3
    return None


class AddressWriter:
    """One rtnetlink socket, kept open; ``replace`` adds or renews an address and raises ``OSError`` on failure."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            sock.settimeout(2.0)  # the acknowledgement is queued before send returns; this only bounds a surprise
            sock.bind((0, 0))
            self._sock = sock
        return self._sock

    def replace(self, ifname: str, address: IPv4Address, prefixlen: int, lifetime: int) -> None:
        index = socket.if_nametoindex(ifname)  # one ioctl; an interface re-created since the last call is found
        sock = self._socket()
        self._seq = self._seq % 0x7FFFFFFF + 1
        seq = self._seq
        sock.send(newaddr_message(seq, index, address, prefixlen, lifetime))
        while True:
            error = ack_error(sock.recv(65536), seq)
            if error is None:
                continue  # an answer to an older request that timed out: not ours
            if error:
                raise OSError(error, f"adding {address}/{prefixlen} on {ifname}: {os.strerror(error)}")
            return

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
