"""The database change log: a transaction's changed rows encoded for the wire, applied on the standby as data in
one transaction together with its log sequence number (LSN), and full copies through SQLite's own serialisation.

Rows, never SQL: each change is (table, primary key, row or None for a deletion), captured on the source by
``haoscar.db.rowlog``. The standby checks every table and column name against the schema of its own database
(known tables and columns only, no internal table), binds every value as a parameter, and writes with statements
it builds itself: an upsert on the primary key, or a delete by it. A change that names anything else, or carries a
value that is not a plain SQL value, refuses the whole transaction and nothing is written.

The LSN row lives in the standby's database (``haoscar_replication``), written in the same transaction as the
changes it counts, so after any crash the standby's data and its LSN agree. A transaction whose LSN is not the next
one, or from another epoch (each full copy starts a new epoch), is refused as a gap: the source then sends a full
copy instead of guessing. A full copy must have exactly the standby's own schema (both heads run the same haoscar
and migrate their own database): a copy from another schema version, or one carrying triggers or views the
standby's schema lacks, is refused.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.db.constants import BUSY_TIMEOUT_MS
from haoscar.db.rowlog import NOT_REPLICATED, RowChange, quote

LSN_TABLE = "haoscar_replication"
_CREATE = f"CREATE TABLE IF NOT EXISTS {LSN_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), epoch TEXT NOT NULL, lsn INTEGER NOT NULL)"  # noqa: E501
assert LSN_TABLE in NOT_REPLICATED


class Gap(Exception):
    def __init__(self, expected_epoch: str, expected_lsn: int) -> None:
        super().__init__(f"expected epoch {expected_epoch} lsn {expected_lsn}")
        self.expected_epoch = expected_epoch
        self.expected_lsn = expected_lsn


class Unencodable(Exception):
    """A value the log cannot carry: the transaction goes unreplicated and forces a full copy."""


class Refused(Exception):
    """A change the standby will not apply: an unknown table or column, a missing key, a value that is no SQL
    value. Nothing of its transaction is written."""


def _enc(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    raise Unencodable(f"cannot replicate a value of type {type(value).__name__}")


def _dec(value: Any) -> Any:
    if value is None or isinstance(value, int | float | str):
        return value
    if isinstance(value, dict) and set(value) == {"$b"} and isinstance(value["$b"], str):
        return base64.b64decode(value["$b"], validate=True)
    raise Refused(f"a replicated value is not an SQL value: {str(value)[:80]!r}")


def encode_change(change: RowChange) -> list[Any]:
    table, key, row = change
    return [
        table,
        {k: _enc(v) for k, v in key.items()},
        None if row is None else {k: _enc(v) for k, v in row.items()},
    ]


def encode_changes(changes: Iterable[RowChange]) -> list[list[Any]]:
    return [encode_change(c) for c in changes]


@dataclass(frozen=True)
class Table:
    keys: tuple[str, ...]
    columns: frozenset[str]


Schema = dict[str, Table]


def schema(conn: sqlite3.Connection) -> Schema:
    """The tables a change may name: the standby's own, read from its database (never from the wire)."""
    known: Schema = {}
    for (name,) in conn.execute("SELECT name FROM main.sqlite_master WHERE type = 'table'").fetchall():
        if name.startswith("sqlite_") or name in NOT_REPLICATED:
            continue
        info = conn.execute(f"PRAGMA main.table_info({quote(name)})").fetchall()
        keys = tuple(col[1] for col in sorted(info, key=lambda c: c[5]) if col[5] > 0)
        if keys:  # a table without a key cannot take row changes (its changes come as full copies)
            known[name] = Table(keys, frozenset(col[1] for col in info))
    return known


def _values(known: Table, raw: Any, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Refused(f"the {what} of a change is not an object")
    unknown = [str(c)[:80] for c in raw if c not in known.columns]
    if unknown:
        raise Refused(f"a change names unknown columns {unknown!r}")
    return {str(c): _dec(v) for c, v in raw.items()}


def _statements(known: Schema, raw: Any) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """The SQL (built here, from the standby's own names) and parameters of one change from the wire."""
    if not isinstance(raw, list) or len(raw) != 3 or not isinstance(raw[0], str):
        raise Refused("a change is not [table, key, row]")
    name, raw_key, raw_row = raw
    table = known.get(name)
    if table is None:
        raise Refused(f"a change names an unknown table {name[:80]!r}")
    key = _values(table, raw_key, "key")
    if set(key) != set(table.keys):
        raise Refused(f"the key of a change to {name} is not its primary key {list(table.keys)}")
    if raw_row is None:
        where = " AND ".join(f"{quote(k)} IS ?" for k in table.keys)
        yield f"DELETE FROM main.{quote(name)} WHERE {where}", tuple(key[k] for k in table.keys)
        return
    row = _values(table, raw_row, "row")
    if any(row.get(k) != v for k, v in key.items()):
        raise Refused(f"a change to {name} has a row that does not match its key")
    cols = list(row)
    updates = ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in cols if c not in table.keys)
    conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    # An upsert, not INSERT OR REPLACE: a replace deletes the old row first, which would cascade to its children.
    yield (
        f"INSERT INTO main.{quote(name)} ({', '.join(quote(c) for c in cols)}) "
        f"VALUES ({', '.join('?' for _ in cols)}) ON CONFLICT ({', '.join(quote(k) for k in table.keys)}) {conflict}",
        tuple(row[c] for c in cols),
    )


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


def begin(conn: sqlite3.Connection, epoch: str, lsn: int) -> Schema:
    """Open the standby's transaction for source transaction ``lsn`` (it may arrive in several parts); ``Gap``
    without changing anything when it is not the next one. Returns the names its changes may use."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        have_epoch, have_lsn = position(conn)
        if have_epoch != epoch or lsn != have_lsn + 1:
            raise Gap(have_epoch, have_lsn + 1)
        # The source's rows arrive in the order of their first change, not in foreign-key order: check at commit.
        conn.execute("PRAGMA defer_foreign_keys = ON")
        return schema(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def apply_changes(conn: sqlite3.Connection, known: Schema, changes: Iterable[Any]) -> int:
    """Apply changes from the wire inside the transaction ``begin`` opened; ``Refused`` on the first bad one."""
    count = 0
    for raw in changes:
        for sql, params in _statements(known, raw):
            conn.execute(sql, params)
        count += 1
    return count


def commit(conn: sqlite3.Connection, lsn: int) -> None:
    conn.execute(f"UPDATE {LSN_TABLE} SET lsn = ? WHERE id = 1", (lsn,))
    conn.execute("COMMIT")


def abort(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def apply_transaction(conn: sqlite3.Connection, epoch: str, lsn: int, changes: Iterable[Any]) -> None:
    """Apply one source transaction (changes as they come from the wire) atomically with its LSN; raise ``Gap``
    or ``Refused`` (or an SQLite error) without changing anything."""
    known = begin(conn, epoch, lsn)
    try:
        apply_changes(conn, known, changes)
        commit(conn, lsn)
    except BaseException:
        abort(conn)
        raise


def snapshot(conn: sqlite3.Connection) -> bytes:
    """A consistent copy of the whole database (the caller holds the write lock so nothing commits meanwhile)."""
    return conn.serialize()


def _objects(conn: sqlite3.Connection) -> set[tuple[str, str, str]]:
    rows = conn.execute("SELECT type, name, sql FROM main.sqlite_master WHERE sql IS NOT NULL").fetchall()
    return {(str(t), str(n), str(q)) for t, n, q in rows if not str(n).startswith("sqlite_") and n != LSN_TABLE}


def revision(conn: sqlite3.Connection) -> str:
    """The schema revision (Alembic's) of a database; both heads must be at the same one to replicate."""
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return ""
    return str(row[0]) if row else ""


def check_copy(copy: sqlite3.Connection, own: sqlite3.Connection) -> None:
    """``Refused`` unless a full copy has this standby's schema: the same revision and the same tables, indexes and
    nothing else (no trigger or view a standby's schema lacks; a standby that has none yet takes no trigger)."""
    theirs, ours = revision(copy), revision(own)
    if ours and theirs != ours:
        raise Refused(
            f"the active head's database is at schema revision {theirs or 'none'}, this head's at {ours}: "
            "run the same haoscar version on both heads"
        )
    mine = _objects(own)
    objects = _objects(copy)
    if mine and objects != mine:
        extra = sorted(name for _t, name, _q in objects - mine)
        raise Refused(f"the full copy's schema differs from this head's (objects {extra[:5]} differ)")
    executable = sorted(name for kind, name, _q in objects if kind in ("trigger", "view"))
    if not mine and executable:
        raise Refused(f"the full copy carries triggers or views this head does not have: {executable[:5]}")


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
        check_copy(source, conn)
        source.backup(conn)
    finally:
        source.close()
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(_CREATE)
    conn.execute(f"INSERT OR REPLACE INTO {LSN_TABLE} (id, epoch, lsn) VALUES (1, ?, 0)", (epoch,))
