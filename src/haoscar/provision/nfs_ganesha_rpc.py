"""The NFS service's health check: an ONC RPC NULL call (procedure 0) to NFS version 4 over TCP (RFC 5531).

It is what ``rpcinfo -t HOST nfs 4`` does, without rpcbind (an NFSv4-only server need not register) and without
a program to install: one record-marked call with AUTH_NONE, and the reply must be an accepted SUCCESS for the same
xid. It proves that the server accepts connections on the address clients use and that its RPC dispatcher answers,
which a bare TCP connect would not (Ganesha accepts connections before its workers run).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct

NFS_PROGRAM = 100003
LAST_FRAGMENT = 0x80000000
MAX_REPLY = 4096  # a NULL reply is 24 bytes; anything larger is not one


def null_call(xid: int, program: int = NFS_PROGRAM, version: int = 4) -> bytes:
    # xid, CALL, RPC version 2, program, version, procedure 0, credential AUTH_NONE (0, 0), verifier AUTH_NONE
    body = struct.pack(">10I", xid, 0, 2, program, version, 0, 0, 0, 0, 0)
    return struct.pack(">I", LAST_FRAGMENT | len(body)) + body


def parse_reply(xid: int, body: bytes) -> str | None:
    """None when ``body`` is an accepted, successful reply to ``xid``; else what is wrong."""
    if len(body) < 12:
        return f"a reply of {len(body)} bytes is too short"
    got, kind, stat = struct.unpack(">3I", body[:12])
    if got != xid or kind != 1:
        return "the reply is not for this call"
    if stat != 0:
        return "the call was denied (MSG_DENIED)"
    if len(body) < 20:
        return "the accepted reply is cut short"
    verf_len = struct.unpack(">I", body[16:20])[0]
    offset = 20 + ((verf_len + 3) // 4) * 4
    if len(body) < offset + 4:
        return "the accepted reply is cut short"
    accept = struct.unpack(">I", body[offset : offset + 4])[0]
    names = {1: "PROG_UNAVAIL", 2: "PROG_MISMATCH", 3: "PROC_UNAVAIL", 4: "GARBAGE_ARGS", 5: "SYSTEM_ERR"}
    return None if accept == 0 else f"the server answered {names.get(accept, accept)}"


async def _exchange(host: str, port: int, program: int, version: int) -> str | None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        xid = int.from_bytes(os.urandom(4), "big")
        writer.write(null_call(xid, program, version))
        await writer.drain()
        body = b""
        while True:
            marker = struct.unpack(">I", await reader.readexactly(4))[0]
            size = marker & ~LAST_FRAGMENT
            if len(body) + size > MAX_REPLY:
                return f"a reply of more than {MAX_REPLY} bytes is not a NULL reply"
            body += await reader.readexactly(size)
            if marker & LAST_FRAGMENT:
                return parse_reply(xid, body)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def rpc_null(host: str, port: int, timeout: float, program: int = NFS_PROGRAM, version: int = 4) -> str | None:
    """None when ``host:port`` answers a NULL call of ``program`` ``version`` within ``timeout``; else why not."""
    where = f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout):
            problem = await _exchange(host, port, program, version)
    except TimeoutError:
        return f"no NFS NULL reply from {where} within {timeout:g} s"
    except asyncio.IncompleteReadError:
        return f"{where} closed the connection before its NULL reply"
    except OSError as exc:
        return f"cannot connect to {where}: {exc.strerror or exc}"
    return None if problem is None else f"{where}: {problem}"
