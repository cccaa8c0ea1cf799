"""The database statement log: a transaction's writes encoded for the wire, applied on the standby in one
transaction together with its log sequence number (LSN), and full copies through SQLite's own serialisation.

The LSN row lives in the standby's database (``haoscar_replication``), written in the same transaction as the
changes it counts, so after any crash the standby's data and its LSN agree. A transaction whose LSN is not the next
one, or from another epoch (each full copy starts a new epoch), is refused as a gap: the source then sends a full
copy instead of guessing.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any

from haoscar.db.constants import BUSY_TIMEOUT_MS, CapturedWrite

LSN_TABLE = "haoscar_replication"
_CREATE = f"CREATE TABLE IF NOT EXISTS {LSN_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL, lsn INTEGER NOT NULL)"  # noqa: E501


class Gap(Exception):
    def __init__(self, expected_epoch: str, expected_lsn: int) -> None:
        super().__init__(f"expected epoch {expected_epoch} lsn {expected_lsn}")
        self.expected_epoch = expected_epoch
        self.expected_lsn = expected_lsn


class Unencodable(Exception):
    """A parameter type the log cannot carry: the transaction goes unreplicated and forces a full copy."""


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, list | tuple):
        return [_enc(v) for v in value]
    if isinstance(value, dict):
        return {"$d": {str(k): _enc(v) for k, v in value.items()}}
    raise Unencodable(f"cannot replicate a parameter of type {type(value).__name__}")


def _dec(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_dec(v) for v in value)
    if isinstance(value, dict):
        if "$b" in value:
            return base64.b64decode(value["$b"])
        return {k: _dec(v) for k, v in value["$d"].items()}
    return value


def encode_writes(writes: list[CapturedWrite]) -> list[list[Any]]:
    return [[sql, _enc(params), bool(many)] for sql, params, many in writes]


def decode_writes(raw: list[list[Any]]) -> list[CapturedWrite]:
    out: list[CapturedWrite] = []
    for sql, params, many in raw:
        decoded = _dec(params) if params is not None else ()
        out.append((str(sql), list(decoded) if many else decoded, bool(many)))
    return out


def connect(path: Path) -> sqlite3.Connection:
    """The standby's writer: every applied transaction is on disk (synchronous=FULL) before it is acknowledged."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def position(conn: sqlite3.Connection) -> tuple[str, int]:
    """(epoch, lsn) of the last applied transaction; ("", 0) for a database that never received a copy."""
    try:
        row = conn.execute(f"SELECT epoch, lsn FROM {LSN_TABLE} WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        return "", 0
    return (str(row[0]), int(row[1])) if row else ("", 0)


def apply_transaction(conn: sqlite3.Connection, epoch: str, lsn: int, writes: list[CapturedWrite]) -> None:
    """Apply one source transaction atomically with its LSN, or raise ``Gap`` without changing anything."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        have_epoch, have_lsn = position(conn)
        if have_epoch != epoch or lsn != have_lsn + 1:
            raise Gap(have_epoch, have_lsn + 1)
        for sql, params, many in writes:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params)
        conn.execute(f"UPDATE {LSN_TABLE} SET lsn = ? WHERE id = 1", (lsn,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def snapshot(conn: sqlite3.Connection) -> bytes:
    """A consistent copy of the whole database (the caller holds the write lock so nothing commits meanwhile)."""
    return conn.serialize()


def restore(conn: sqlite3.Connection, data: bytes, epoch: str) -> None:
    """Replace the standby's database with ``data`` through SQLite's backup API (safe with readers and the WAL),
    then record the new epoch at LSN 0."""
    image = bytearray(data)
    if len(image) >= 20 and image[18:20] == b"\x02\x02":
        # A WAL database's header says so; an in-memory copy cannot use a WAL, so read it as a rollback journal one.
        image[18:20] = b"\x01\x01"
    source = sqlite3.connect(":memory:")
    try:
        source.deserialize(bytes(image))
        source.backup(conn)
    finally:
        source.close()
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_CREATE)
    conn.execute(f"INSERT OR REPLACE INTO {LSN_TABLE} (id, epoch, lsn) VALUES (1, ?, 0)", (epoch,))
