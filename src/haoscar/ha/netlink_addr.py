"""Add (or renew), remove and look up one IPv4 address: one rtnetlink request on the caller's own thread.

The VIP is added on a takeover's critical path and renewed every heartbeat. pyroute2's synchronous ``IPRoute``
runs an event loop of its own, so ``Vip`` had to call it from a worker thread: a thread hop plus an interface
lookup and the address request, two netlink round trips. A takeover measured 12-50 ms for that step on a loaded
2-core machine (the worker thread and the event loop waiting for a CPU and the GIL in turn). This module sends the
one ``RTM_NEWADDR`` message itself and reads its acknowledgement; the kernel handles the request inside ``send``,
so the acknowledgement is queued when ``send`` returns and nothing waits for another thread.

Removing the VIP and asking whether it is there are the same kind of request (``RTM_DELADDR``, an ``RTM_GETADDR``
dump read for the one address), so the daemon no longer imports pyroute2 at all: its 160 modules were ~20 MB of
the daemon's resident memory for two rare calls (docs/benchmarks.md, idle cost).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from ipaddress import IPv4Address

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
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


def deladdr_message(seq: int, index: int, address: IPv4Address, prefixlen: int) -> bytes:
    """``ip addr del ADDRESS/PREFIXLEN dev INDEX`` as one acknowledged message."""
    body = _IFADDRMSG.pack(socket.AF_INET, prefixlen, 0, 0, index)
    body += _attr(IFA_LOCAL, address.packed) + _attr(IFA_ADDRESS, address.packed)
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def getaddr_message(seq: int) -> bytes:
    """A dump of every IPv4 address of the host (``ip -4 addr show``); the caller picks the one it asks about."""
    body = _IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def dump_addresses(data: bytes, seq: int) -> tuple[list[tuple[int, IPv4Address]], bool]:
    """The (interface index, address) pairs in one datagram of dump ``seq``'s answer, and whether it ended there
    (``NLMSG_DONE``, or an error for it). Messages of other sequence numbers (late answers) are skipped."""
    found: list[tuple[int, IPv4Address]] = []
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length, kind, _flags, got, _port = _NLMSG.unpack_from(data, offset)
        if length < _NLMSG.size:
            break
        if got == seq:
            if kind in (NLMSG_DONE, NLMSG_ERROR):
                return found, True
            if kind == RTM_NEWADDR and length >= _NLMSG.size + _IFADDRMSG.size:
                family, _plen, _fl, _scope, index = _IFADDRMSG.unpack_from(data, offset + _NLMSG.size)
                attrs = _attributes(data[offset + _NLMSG.size + _IFADDRMSG.size : offset + length])
                raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
                if family == socket.AF_INET and raw is not None and len(raw) == 4:
                    found.append((index, IPv4Address(raw)))
        offset += (length + 3) & ~3
    return found, False


def _attributes(data: bytes) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        attrs.setdefault(kind, data[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return attrs


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


def _index(ifname: str) -> int:
    """One ioctl, asked at each use: an interface re-created since the last call is found with its new index."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise OSError(f"interface {ifname} not found") from None


class AddressWriter:
    """One rtnetlink socket, kept open; ``replace`` adds or renews an address, ``remove`` drops it, ``present``
    looks for it; each raises ``OSError`` on a failure. A lock keeps one request and its answer together (the
    daemon's loop renews while a shutdown path may remove)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lock = threading.Lock()

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
            sock.settimeout(2.0)  # the acknowledgement is queued before send returns; this only bounds a surprise
            sock.bind((0, 0))
            self._sock = sock
        return self._sock

    def _next_seq(self) -> int:
        self._seq = self._seq % 0x7FFFFFFF + 1
        return self._seq

    def _acknowledged(self, message: bytes, seq: int) -> int:
        """Send one request and return the errno of its acknowledgement (0: done)."""
        sock = self._socket()
        sock.send(message)
        while True:
            error = ack_error(sock.recv(65536), seq)
            if error is not None:
                return error
            # else an answer to an older request that timed out: not ours

    def replace(self, ifname: str, address: IPv4Address, prefixlen: int, lifetime: int) -> None:
        index = _index(ifname)
        with self._lock:
            seq = self._next_seq()
            error = self._acknowledged(newaddr_message(seq, index, address, prefixlen, lifetime), seq)
        if error:
            raise OSError(error, f"adding {address}/{prefixlen} on {ifname}: {os.strerror(error)}")

    def remove(self, ifname: str, address: IPv4Address, prefixlen: int) -> bool:
        """Drop the address; False when it was not there (``EADDRNOTAVAIL``, e.g. its lifetime ran out)."""
        index = _index(ifname)
        with self._lock:
            seq = self._next_seq()
            error = self._acknowledged(deladdr_message(seq, index, address, prefixlen), seq)
        if error in (99, 19):  # EADDRNOTAVAIL: not there (e.g. expired); ENODEV: its interface went with it
            return False
        if error:
            raise OSError(error, f"removing {address}/{prefixlen} from {ifname}: {os.strerror(error)}")
        return True

    def present(self, ifname: str, address: IPv4Address) -> bool:
        """Whether ``address`` is on interface ``ifname`` now."""
        index = _index(ifname)
        found: list[tuple[int, IPv4Address]] = []
        with self._lock:
            seq = self._next_seq()
            sock = self._socket()
            sock.send(getaddr_message(seq))
            done = False
            while not done:
                part, done = dump_addresses(sock.recv(65536), seq)
                found += part
        return (index, address) in found

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
