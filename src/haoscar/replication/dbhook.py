"""The writer's side of synchronous database replication, attached by ``haoscar.commands.wiring.open_cluster_database``.

When this head's replication runs as the source (its socket exists), each write transaction is handed to it just
before SQLite commits, and the commit waits for the answer: either the standby has the transaction on disk, or the
standby was declared stale (and the witness recorded it) and this head goes on alone. The one case where the commit
is refused: the standby did not acknowledge it and the witness could not be told either - a head cut from both must
not acknowledge a change that a takeover would lose.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from haoscar import linesock
from haoscar.db.rowlog import RowChanges
from haoscar.db.session import Database
from haoscar.errors import UserError
from haoscar.replication.config import DB_SOCKET as SOCKET
from haoscar.replication.dblog import Unencodable, encode_change
from haoscar.replication.dbwire import MAX_BLOB, PART_BYTES
from haoscar.sockpath import socket_name

# Longer than any ack timeout the daemon uses: the daemon, not this client, decides when the standby is too late.
REPLY_TIMEOUT = 30.0
UNREPLICATED_MARK = "unreplicated"
MAX_ROW_BYTES = MAX_BLOB // 2  # a part holds whole rows: one row must leave room in a frame


class NotReplicated(UserError):
    """The change was not committed: nothing on this head may acknowledge it (a cut-off active head)."""

    exit_code = 1


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / "replication" / SOCKET


def attach_if_replicating(db: Database) -> None:
    """The hook on a database of a head that replicates (``STATE/replication`` exists: the replication daemon ran
    here). Whether it is the source is asked at each commit, not at open: a long-lived writer that opened the
    database before the source side made its socket (the boot server, started with the HA services) must still
    ship what it writes (its install states were lost on failover before). A state directory that never
    replicated pays nothing (the row capture stays off)."""
    path = socket_path(db.state_dir)
    if path.parent.is_dir():
        db.add_commit_hook(CommitShipper(path))


def request_lines(changes: RowChanges, part_bytes: int = PART_BYTES) -> Iterator[bytes]:
    """The transaction as request lines of about ``part_bytes`` each (``part``... then ``txn``), encoded as they
    are sent: a transaction of any size, in bounded memory. ``Unencodable`` for a value the log cannot carry."""
    if changes.schema_changed or changes.unkeyed:
        # Schema changes are not replicated as such (each head migrates its own database): a full copy follows.
        why = "the schema changed" if changes.schema_changed else "a table without a primary key changed"
        yield json.dumps({"op": "dirty", "reason": why}).encode() + b"\n"
        return
    batch: list[bytes] = []
    size = 0
    for change in changes:
        item = json.dumps(encode_change(change), separators=(",", ":")).encode()
        if len(item) > MAX_ROW_BYTES:
            # One row larger than a frame may carry: the daemon drops what it shipped and sends a full copy
            # (which travels in parts of any number) before this commit is acknowledged.
            yield json.dumps({"op": "dirty", "reason": f"a row of {len(item)} bytes in {change[0]}"}).encode() + b"\n"
            return
        if batch and size + len(item) > part_bytes:
            yield b'{"op":"part","changes":[' + b",".join(batch) + b"]}\n"
            batch, size = [], 0
        batch.append(item)
        size += len(item) + 1
    yield b'{"op":"txn","changes":[' + b",".join(batch) + b"]}\n"


class CommitShipper:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_reply: dict[str, Any] | None = None

    def __call__(self, changes: RowChanges) -> None:
        if not self.path.exists():  # this head is not a replication source (now): nothing to ship
            return
        lines = request_lines(changes)
        try:
            first = next(lines)
        except Unencodable as exc:
            first, lines = json.dumps({"op": "dirty", "reason": str(exc)}).encode() + b"\n", iter(())
        self.last_reply = self._ask(_chain(first, lines))
        if self.last_reply.get("refused"):
            raise NotReplicated(f"not committed: {self.last_reply.get('reason')}")

    def _ask(self, lines: Iterator[bytes]) -> dict[str, Any]:
        try:
            with socket_name(self.path) as name:  # any state-dir length (see haoscar.sockpath)
                return linesock.ask(name, lines, REPLY_TIMEOUT)
        except Unencodable as exc:
            # Part of the transaction is already with the daemon: breaking the connection makes it count the
            # standby as missing this transaction (a full copy follows).
            return self._unreplicated(f"cannot replicate this transaction: {exc}")
        except (OSError, ValueError) as exc:
            return self._unreplicated(f"replication daemon unreachable: {exc}")

    def _unreplicated(self, reason: str) -> dict[str, Any]:
        # The replication daemon died: its next start sends the standby a full copy (a new epoch) anyway; the mark
        # makes `haoscar repl status` say that changes went unreplicated meanwhile.
        mark = self.path.parent / UNREPLICATED_MARK
        with contextlib.suppress(OSError):
            mark.write_text(f"{time.time()}\n{reason}\n")
        return {"replicated": False, "reason": reason}


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
