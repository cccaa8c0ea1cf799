"""NFSv4.0 SETATTR by path, in plain Python: what libnfs 4.0 cannot do for ``nfs_client``.

libnfs 4.0 implements chmod, chown and utimes over NFSv4 as OPEN(write) + SETATTR + CLOSE: that fails on a
directory (NFS4ERR_ISDIR: no ``chmod 700 ~/.ssh``) and on a file its owner may not write, and it creates files
with mode 0600 whatever was asked. One COMPOUND does it right: PUTROOTFH, LOOKUP of each path component,
SETATTR with the anonymous stateid (no OPEN state is needed to change mode, owner or times; RFC 7530 section 16.32),
sent as ONC RPC (RFC 5531) over TCP with AUTH_SYS credentials, on a connection of its own.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass

from haoscar.lab.nfs4_status import name_of, status_errno

NFS_PROGRAM, NFS_V4, COMPOUND = 100003, 4, 1
OP_LOOKUP, OP_PUTROOTFH, OP_SETATTR = 15, 24, 34
# fattr4 attribute numbers (RFC 7530 section 5.8): all in the second bitmap word (32..63).
MODE, OWNER, OWNER_GROUP, TIME_ACCESS_SET, TIME_MODIFY_SET = 33, 36, 37, 48, 54
SET_TO_CLIENT_TIME4 = 1


def _u32(value: int) -> bytes:
    return struct.pack(">I", value & 0xFFFFFFFF)


def _opaque(data: bytes) -> bytes:
    return _u32(len(data)) + data + b"\0" * (-len(data) % 4)


@dataclass(frozen=True)
class Creds:
    """AUTH_SYS credentials of one call: the FUSE caller's (supplementary groups are not sent)."""

    uid: int
    gid: int


@dataclass(frozen=True)
class Attrs:
    """What to set; None leaves an attribute as it is. Times in nanoseconds since the epoch."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None

    def fattr4(self) -> bytes:
        values: list[tuple[int, bytes]] = []
        if self.mode is not None:
            values.append((MODE, _u32(self.mode & 0o7777)))
        if self.uid is not None:
            values.append((OWNER, _opaque(str(self.uid).encode())))  # numeric owners (Only_Numeric_Owners)
        if self.gid is not None:
            values.append((OWNER_GROUP, _opaque(str(self.gid).encode())))
        for number, ns in ((TIME_ACCESS_SET, self.atime_ns), (TIME_MODIFY_SET, self.mtime_ns)):
            if ns is not None:
                seconds, nanos = divmod(ns, 10**9)
                values.append((number, _u32(SET_TO_CLIENT_TIME4) + struct.pack(">qI", seconds, nanos)))
        words = [0, 0]
        for number, _ in values:
            words[number // 32] |= 1 << (number % 32)
        return _u32(2) + b"".join(_u32(w) for w in words) + _opaque(b"".join(v for _, v in values))


def _auth_sys(uid: int, gid: int) -> bytes:
    body = _u32(0) + _opaque(socket.gethostname().encode()[:255]) + _u32(uid) + _u32(gid) + _u32(0)
    return _u32(1) + _opaque(body)


def compound(path_parts: list[str], attrs: Attrs, creds: Creds, xid: int) -> bytes:
    """The RPC call message (without its record mark)."""
    ops = [_u32(OP_PUTROOTFH)] + [_u32(OP_LOOKUP) + _opaque(part.encode()) for part in path_parts]
    ops.append(_u32(OP_SETATTR) + _u32(0) + b"\0" * 12 + attrs.fattr4())  # anonymous stateid
    args = _opaque(b"") + _u32(0) + _u32(len(ops)) + b"".join(ops)  # tag, minorversion 0, the ops
    header = b"".join(_u32(v) for v in (xid, 0, 2, NFS_PROGRAM, NFS_V4, COMPOUND))
    return header + _auth_sys(creds.uid, creds.gid) + _u32(0) + _u32(0) + args


def _read_reply(sock: socket.socket) -> bytes:
    message = b""
    while True:
        mark = struct.unpack(">I", _read_exactly(sock, 4))[0]
        message += _read_exactly(sock, mark & 0x7FFFFFFF)
        if mark & 0x80000000:
            return message


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "the server closed the connection")
        data += chunk
    return data


def parse_status(reply: bytes, xid: int) -> int:
    """The COMPOUND's nfsstat4 (that of the first op that failed, or 0); raises OSError if RPC refused it."""
    got_xid, kind, reply_stat = struct.unpack(">III", reply[:12])
    if got_xid != xid or kind != 1 or reply_stat != 0:
        raise OSError(errno.EIO, f"RPC call refused (xid {got_xid}, type {kind}, reply_stat {reply_stat})")
    verf_len = struct.unpack(">I", reply[16:20])[0]
    at = 20 + verf_len + (-verf_len % 4)
    accept_stat, status = struct.unpack(">II", reply[at : at + 8])
    if accept_stat != 0:
        raise OSError(errno.EIO, f"RPC call not accepted (accept_stat {accept_stat})")
    return int(status)


def setattr_path(server: str, path: str, attrs: Attrs, creds: Creds, *, port: int = 2049, timeout: float = 3.0) -> None:
    """Set ``attrs`` of ``path`` (from the server's NFSv4 root: export and path) as ``creds``; raises OSError."""
    parts = [p for p in path.split("/") if p]
    xid = int.from_bytes(os.urandom(4), "big")
    message = compound(parts, attrs, creds, xid)
    with socket.create_connection((server, port), timeout=timeout) as sock:
        sock.sendall(_u32(0x80000000 | len(message)) + message)
        status = parse_status(_read_reply(sock), xid)
    if status != 0:
        code = status_errno(status)
        raise OSError(code, f"SETATTR {path}: {os.strerror(code)} ({name_of(status)})")
