"""The local control socket of a head's daemon: ``haoscar ha status / switchover / failback`` on the same host.

A UNIX socket under the daemon's state directory, mode 0600 (root only), one JSON request line and one JSON reply
line per connection. Over the network the token-protected HTTPS API (``haoscar.ha.api``) does the same: it runs in
a process of its own (``haoscar.ha.apiserver``) that asks the daemon through this socket, so the daemon's event loop
never serves a connection from the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from haoscar import linesock
from haoscar.errors import UserError
from haoscar.sockpath import socket_name

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def control_path(state_dir: Path) -> Path:
    return state_dir / "ha" / "control.sock"


async def serve_control(path: Path, handler: Handler) -> asyncio.Server:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5.0)
            request = json.loads(line or b"{}")
            op = str(request.get("op", "status"))
            reply = await handler(op, request)
        except Exception as exc:  # a bad client must never hurt the daemon
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        with contextlib.suppress(Exception):
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
            writer.close()

    old = os.umask(0o077)
    try:
        # Bound here rather than by asyncio, through a short name: the state directory may be of any length.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with socket_name(path) as name:
                sock.bind(name)
        except BaseException:
            sock.close()
            raise
        server = await asyncio.start_unix_server(on_client, sock=sock)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return server


def request(path: Path, op: str, timeout: float = 10.0, **params: Any) -> dict[str, Any]:
    """Ask the daemon behind ``path``; a ``UserError`` when none is running there."""
    try:
        with socket_name(path) as name:
            return linesock.ask(name, {"op": op, **params}, timeout)
    except (FileNotFoundError, linesock.NoServer):
        raise UserError(
            f"no HA daemon answers on {path}; start it with `haoscar ha run --node NAME --spec FILE` "
            "(and pass the same --state-dir)"
        ) from None
    except ConnectionError:
        return {}  # the daemon closed without a word (it was stopping): callers treat it as an empty answer
    except ValueError:
        raise UserError(f"the HA daemon on {path} sent an unexpected reply") from None
