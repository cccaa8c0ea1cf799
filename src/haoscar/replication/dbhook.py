"""The writer's side of synchronous database replication, attached by ``haoscar.db.session.open_database``.

When this head's replication runs as the source (its socket exists), each write transaction is handed to it just
before SQLite commits, and the commit waits for the answer: either the standby has the transaction on disk, or the
standby was declared stale (and the witness recorded it) and this head goes on alone. The one case where the commit
is refused: the standby did not acknowledge it and the witness could not be told either - a head cut from both must
not acknowledge a change that a takeover would lose.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

from haoscar.db.session import CapturedWrite, Database
from haoscar.errors import UserError
from haoscar.replication.config import DB_SOCKET as SOCKET
from haoscar.replication.dblog import Unencodable, encode_writes
from haoscar.sockpath import socket_name

# Longer than any ack timeout the daemon uses: the daemon, not this client, decides when the standby is too late.
REPLY_TIMEOUT = 30.0
UNREPLICATED_MARK = "unreplicated"


class NotReplicated(UserError):
    """The change was not committed: nothing on this head may acknowledge it (a cut-off active head)."""

    exit_code = 1


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / "replication" / SOCKET


def attach_if_replicating(db: Database) -> None:
    path = socket_path(db.state_dir)
    if path.exists():
        db.add_commit_hook(CommitShipper(path))


class CommitShipper:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_reply: dict[str, Any] | None = None

    def __call__(self, writes: list[CapturedWrite]) -> None:
        try:
            request: dict[str, Any] = {"op": "txn", "writes": encode_writes(writes)}
        except Unencodable as exc:
            request = {"op": "dirty", "reason": str(exc)}
        self.last_reply = self._ask(request)
        if self.last_reply.get("refused"):
            raise NotReplicated(f"not committed: {self.last_reply.get('reason')}")

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(REPLY_TIMEOUT)
                with socket_name(self.path) as name:  # any state-dir length (see haoscar.sockpath)
                    sock.connect(name)
                sock.sendall(json.dumps(request).encode() + b"\n")
                data = b""
                while not data.endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            reply: dict[str, Any] = json.loads(data) if data else {"replicated": False, "reason": "no reply"}
            return reply
        except (OSError, ValueError) as exc:
            # The replication daemon died: its next start sends the standby a full copy (a new epoch) anyway; the
            # mark makes `haoscar repl status` say that changes went unreplicated meanwhile.
            mark = self.path.parent / UNREPLICATED_MARK
            with contextlib.suppress(OSError):
                mark.write_text(f"{time.time()}\n{exc}\n")
            return {"replicated": False, "reason": f"replication daemon unreachable: {exc}"}
