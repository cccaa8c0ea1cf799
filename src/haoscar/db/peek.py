"""Read-only look-ups in the cluster database with the ``sqlite3`` module, for commands whose start-up counts.

``haoscar exec`` and ``haoscar copy`` need three things before they fan out: the node names, the groups, the private
addresses. Loading SQLAlchemy and the models for them was about half of an exec's start-up (0.3 s of 0.6 s measured
on this 2-core machine), while the fan-out over held ssh connections takes about a second for 200 nodes. These
queries read what ``provision.node_groups`` reads through the ORM; ``tests/unit/commands/test_exec_lookup.py``
checks that both give the same answer.

Only a database at ``constants.HEAD_REVISION`` is read here (``open_peek`` returns None otherwise): an older one
goes through the normal door, which migrates it first. Nothing here writes.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from haoscar.db import constants


@dataclass(frozen=True)
class GroupMember:
    """A node as the groups see it: its name, role, client group and image (None when it has none)."""

    name: str
    role: str
    group: str | None
    image: str | None


class Peek:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def node_names(self) -> list[str]:
        return [str(name) for (name,) in self.conn.execute("SELECT name FROM nodes")]

    def group_names(self) -> list[str]:
        return [str(name) for (name,) in self.conn.execute("SELECT name FROM groups")]

    def node_rows(self) -> list[GroupMember]:
        query = (
            "SELECT nodes.name, nodes.role, groups.name, images.name FROM nodes "
            "LEFT OUTER JOIN groups ON nodes.group_id = groups.id "
            "LEFT OUTER JOIN images ON nodes.image_id = images.id"
        )
        return [GroupMember(str(n), str(r), g, i) for n, r, g, i in self.conn.execute(query)]

    def private_addresses(self) -> dict[str, str]:
        query = (
            "SELECT nodes.name, interfaces.ip FROM nodes JOIN interfaces ON interfaces.node_id = nodes.id "
            "WHERE interfaces.network = 'private'"
        )
        return {str(name): str(ip) for name, ip in self.conn.execute(query)}


def schema_revision(conn: sqlite3.Connection) -> str | None:
    """The revision Alembic recorded, or None on a database it has not touched yet."""
    table = "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    if conn.execute(table).fetchone() is None:
        return None
    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


@contextlib.contextmanager
def open_peek(state_dir: Path) -> Iterator[Peek | None]:
    """The database of ``state_dir`` read in one transaction (one consistent snapshot; nothing is written), or None
    when there is no database there or its schema is not the current one (the caller then takes the normal door)."""
    path = state_dir / constants.DB_FILE
    if not path.is_file():
        yield None
        return
    # Not ``mode=ro``: a read-only connection cannot create the WAL's shared-memory file when it is missing.
    conn = sqlite3.connect(path, timeout=constants.BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        try:
            conn.execute("BEGIN")  # a read transaction: the look-ups see one state of the database
            current = schema_revision(conn) == constants.HEAD_REVISION
        except sqlite3.Error:
            current = False
        yield Peek(conn) if current else None
    finally:
        conn.close()
