"""An NFSv4 client that writes by file handle, as a kernel client does with the handles it holds (lab only).

A kernel NFS client keeps each file's handle and does not look the name up again; after the server lost its state
(a restart), an NFSv4.1 client reopens its files by handle (``OPEN`` with ``CLAIM_FH``, RFC 8881 18.16). NFS-Ganesha's
VFS backend then opens the file with ``open_by_handle_at``: when the server's kernel had evicted the file's dentry
meanwhile, that is a disconnected dentry, whose writes inotify does not report (docs/nfs.md). libnfs (the lab's
client) speaks NFSv4.0 and always opens by name, so ``tests/lab/test_nfs_handle_writes.py`` uses this:

- ``getfh``: NFSv4.0 PUTROOTFH + LOOKUP... + GETFH, the handle a client keeps;
- ``write``: an NFSv4.1 session (EXCHANGE_ID, CREATE_SESSION, RECLAIM_COMPLETE), then one COMPOUND of SEQUENCE,
  PUTFH, OPEN (CLAIM_FH, write access), WRITE (FILE_SYNC4: acknowledged means on the server's disk) and CLOSE, the
  last two with the current stateid (RFC 8881 16.2.3.1.2).

    python -m haoscar.scenarios.nfs_fh_client getfh SERVER /home/u/f UID GID          -> prints the handle in hex
    python -m haoscar.scenarios.nfs_fh_client write SERVER HANDLE_HEX OFFSET TEXT UID GID
"""

from __future__ import annotations

import os
import socket
import struct
import sys

from haoscar.lab.nfs4_setattr import _auth_sys, _opaque, _read_reply, _u32, parse_status

NFS_PROGRAM, NFS_V4, COMPOUND = 100003, 4, 1
OP_CLOSE, OP_GETFH, OP_LOOKUP, OP_OPEN, OP_PUTFH, OP_PUTROOTFH, OP_WRITE = 4, 10, 15, 18, 22, 24, 38
OP_EXCHANGE_ID, OP_CREATE_SESSION, OP_SEQUENCE, OP_RECLAIM_COMPLETE = 42, 43, 53, 58
FILE_SYNC4, OPEN4_SHARE_ACCESS_WRITE, CLAIM_FH = 2, 2, 4
CURRENT_STATEID = struct.pack(">I", 1) + b"\0" * 12


def _call(server: str, ops: list[bytes], creds: tuple[int, int], minor: int = 0, timeout: float = 5.0) -> bytes:
    """Send one COMPOUND; return the reply from its results (after status, tag and count). Raises OSError."""
    xid = int.from_bytes(os.urandom(4), "big")
    args = _opaque(b"") + _u32(minor) + _u32(len(ops)) + b"".join(ops)  # tag, minorversion
    header = b"".join(_u32(v) for v in (xid, 0, 2, NFS_PROGRAM, NFS_V4, COMPOUND))
    message = header + _auth_sys(*creds) + _u32(0) + _u32(0) + args
    with socket.create_connection((server, 2049), timeout=timeout) as sock:
        sock.sendall(_u32(0x80000000 | len(message)) + message)
        reply = _read_reply(sock)
    status = parse_status(reply, xid)
    if status != 0:
        raise OSError(status, f"COMPOUND failed: nfsstat4 {status}")
    verf_len = struct.unpack(">I", reply[16:20])[0]
    at = 20 + verf_len + (-verf_len % 4) + 8  # accept_stat, status
    tag_len = struct.unpack(">I", reply[at : at + 4])[0]
    return reply[at + 4 + tag_len + (-tag_len % 4) + 4 :]  # the results, after their count


def getfh(server: str, path: str, uid: int, gid: int) -> bytes:
    parts = [p for p in path.split("/") if p]
    ops = [_u32(OP_PUTROOTFH), *(_u32(OP_LOOKUP) + _opaque(p.encode()) for p in parts), _u32(OP_GETFH)]
    results = _call(server, ops, (uid, gid))
    at = 8 * (1 + len(parts)) + 8  # (op, status) of PUTROOTFH and each LOOKUP, then GETFH's (op, status)
    size = struct.unpack(">I", results[at : at + 4])[0]
    return results[at + 4 : at + 4 + size]


def _channel() -> bytes:
    # headerpadsize, maxrequestsize, maxresponsesize, maxresponsesize_cached, maxoperations, maxrequests, rdma_ird<>
    return b"".join(_u32(v) for v in (0, 1 << 20, 1 << 20, 4096, 16, 1, 0))


def _session(server: str, creds: tuple[int, int]) -> tuple[bytes, int]:
    """EXCHANGE_ID + CREATE_SESSION + RECLAIM_COMPLETE: (session id, client id)."""
    owner = os.urandom(8) + _opaque(f"haoscar-fh-client-{os.getpid()}-{os.urandom(4).hex()}".encode())
    # client_owner4, flags, state_protect SP4_NONE, no implementation id
    exchange = _u32(OP_EXCHANGE_ID) + owner + _u32(0) + _u32(0) + _u32(0)
    got = _call(server, [exchange], creds, minor=1)
    clientid, sequence = struct.unpack(">QI", got[8:20])
    create = (
        _u32(OP_CREATE_SESSION) + struct.pack(">QI", clientid, sequence) + _u32(0) + _channel() + _channel()
        + _u32(0x40000000) + _u32(1) + _u32(0)  # callback program, one AUTH_NONE security parameter
    )  # fmt: skip
    session = _call(server, [create], creds, minor=1)[8:24]
    _call(server, [_sequence(session, 1), _u32(OP_RECLAIM_COMPLETE) + _u32(0)], creds, minor=1)
    return session, clientid


def _sequence(session: bytes, seq: int) -> bytes:
    return _u32(OP_SEQUENCE) + session + _u32(seq) + _u32(0) + _u32(0) + _u32(0)  # slot 0, highest 0, no cache


def write(server: str, handle: bytes, offset: int, data: bytes, *, uid: int, gid: int) -> None:
    """Reopen the file by ``handle`` (CLAIM_FH), WRITE ``data`` at ``offset`` with FILE_SYNC4, CLOSE."""
    creds = (uid, gid)
    session, clientid = _session(server, creds)
    open_owner = struct.pack(">Q", clientid) + _opaque(b"haoscar-fh-writer")
    ops = [
        _sequence(session, 2),
        _u32(OP_PUTFH) + _opaque(handle),
        # seqid, share access WRITE, deny none, owner, OPEN4_NOCREATE, CLAIM_FH
        _u32(OP_OPEN) + _u32(0) + _u32(OPEN4_SHARE_ACCESS_WRITE) + _u32(0) + open_owner + _u32(0) + _u32(CLAIM_FH),
        _u32(OP_WRITE) + CURRENT_STATEID + struct.pack(">Q", offset) + _u32(FILE_SYNC4) + _opaque(data),
        _u32(OP_CLOSE) + _u32(0) + CURRENT_STATEID,
    ]
    _call(server, ops, creds, minor=1)


def main(argv: list[str]) -> int:
    if argv[:1] == ["getfh"] and len(argv) == 5:
        print(getfh(argv[1], argv[2], int(argv[3]), int(argv[4])).hex())
        return 0
    if argv[:1] == ["write"] and len(argv) == 7:
        write(argv[1], bytes.fromhex(argv[2]), int(argv[3]), argv[4].encode(), uid=int(argv[5]), gid=int(argv[6]))
        print("acknowledged")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
