"""The client of haoscar's local line-JSON UNIX sockets (the HA daemon's control socket, the replication
daemon's database socket): one or more JSON request lines, one JSON reply line, then the server closes.

A kernel module: it imports nothing from haoscar, so both the HA commands and the database's commit seam use the
same client. Callers pass the name to connect to, which ``haoscar.sockpath.socket_name`` makes short enough for
``sun_path`` whatever the state directory's length.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from typing import Any

# A reply is one line; far larger than any reply a haoscar daemon sends, small enough to bound a broken one.
MAX_REPLY = 16 * 1024 * 1024


class NoServer(OSError):
    """Nothing listens on the socket (missing file, refused connection)."""


def ask(name: str, request: dict[str, Any] | Iterable[bytes], timeout: float) -> dict[str, Any]:
    """Send ``request`` (a dict, or already-encoded lines each ending in a newline, for a request streamed in
    parts) and return the reply object. ``NoServer`` when nothing listens; ``OSError`` on a broken connection or
    timeout; ``ValueError`` when the reply is not a JSON object."""
    lines: Iterable[bytes] = [json.dumps(request).encode() + b"\n"] if isinstance(request, dict) else request
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        try:
            sock.connect(name)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoServer(exc.errno, f"nothing listens on {name}") from None
        for line in lines:
            sock.sendall(line)
        data = b""
        while not data.endswith(b"\n") and len(data) <= MAX_REPLY:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data:
        raise ConnectionError(f"{name} closed the connection without a reply")
    reply = json.loads(data)
    if not isinstance(reply, dict):
        raise ValueError(f"{name} sent a reply that is not a JSON object")
    return reply
