"""Row-level change capture for replication: which rows a write transaction changed, read just before it commits.

Replication ships rows, never SQL: a standby that executed statements from the wire would run whatever the sender
wrote (``ATTACH`` writes files as root). Capture therefore happens inside SQLite: per connection, TEMP triggers on
every replicated table record ``(table, primary key)`` of each inserted, updated or deleted row into a TEMP
change-log table, in the same transaction (a rollback, or a rollback to a savepoint, forgets them with the rows).
Just before the commit, each changed key is looked up again: the row's current values are shipped (upsert), or,
when it no longer exists, its key (delete). TEMP objects live only in this connection: nothing of it is written to
the database file, and a standby's copy carries no trigger.

Schema changes are not replicated: each head runs the same haoscar and migrates its own database. A transaction
that changes the schema (a migration) is reported as such, and replication answers it with a full copy.

No SQLAlchemy here: the replication daemon imports the types without loading it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

# (table, primary key {column: value}, the row's current values, or None when it was deleted)
RowChange = tuple[str, dict[str, Any], dict[str, Any] | None]

# Never replicated as rows: Alembic's revision (each head migrates its own database) and the standby's LSN row.
NOT_REPLICATED = ("alembic_version", "haoscar_replication")
LOG_TABLE = "haoscar_row_changes"
_TRIGGER_PREFIX = "haoscar_rc_"
# A key that cannot be shipped as a row (a table without a primary key): the transaction needs a full copy.
UNKEYED = "*"


def quote(name: str) -> str:
    """An SQL identifier, quoted (only ever used on names read from a database's own schema)."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def replicated_tables(conn: sqlite3.Connection, schema: str = "main") -> dict[str, list[str]]:
    """{table: [primary key columns in key order]} of every table replication carries ([] when it has no key)."""
    tables: dict[str, list[str]] = {}
    rows = conn.execute(f"SELECT name FROM {schema}.sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
    for (name,) in rows:
        if name.startswith("sqlite_") or name in NOT_REPLICATED:
            continue
        info = conn.execute(f"PRAGMA {schema}.table_info({quote(name)})").fetchall()
        tables[name] = [col[1] for col in sorted(info, key=lambda c: c[5]) if col[5] > 0]
    return tables


def _versions(conn: sqlite3.Connection) -> tuple[int, int]:
    main = conn.execute("PRAGMA main.schema_version").fetchone()[0]
    temp = conn.execute("PRAGMA temp.schema_version").fetchone()[0]
    return int(main), int(temp)


def prepare(conn: sqlite3.Connection, info: dict[str, Any]) -> None:
    """At the start of a write transaction: make sure this connection's triggers match the current schema.

    ``info`` is kept per DBAPI connection; the schema versions it remembers say when the triggers must be rebuilt
    (a migration changed the schema, or a rolled-back transaction took the TEMP objects with it)."""
    versions = _versions(conn)
    if info.get("haoscar_rowlog") != versions:
        _install(conn)
        versions = _versions(conn)
        info["haoscar_rowlog"] = versions
    info["haoscar_rowlog_begin"] = versions[0]


def _install(conn: sqlite3.Connection) -> None:
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {LOG_TABLE} (seq INTEGER PRIMARY KEY, tbl TEXT NOT NULL, pk TEXT NOT NULL)"
    )
    old = conn.execute(f"SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name LIKE '{_TRIGGER_PREFIX}%'")
    for (name,) in old.fetchall():
        conn.execute(f"DROP TRIGGER temp.{quote(name)}")
    for index, (table, keys) in enumerate(replicated_tables(conn).items()):
        for event, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            key = f"json_array({', '.join(f'{row}.{quote(k)}' for k in keys)})" if keys else _literal(UNKEYED)
            name = f"{_TRIGGER_PREFIX}{index}_{event.lower()}_{row.lower()}"
            conn.execute(
                f"CREATE TEMP TRIGGER {quote(name)} AFTER {event} ON main.{quote(table)} BEGIN "
                f"INSERT INTO {LOG_TABLE} (tbl, pk) VALUES ({_literal(table)}, {key}); END"
            )


class RowChanges:
    """The changes of the transaction about to commit on ``conn``; iterating reads them (bounded memory)."""

    def __init__(self, conn: sqlite3.Connection, info: dict[str, Any]) -> None:
        self.conn = conn
        self.schema_changed = _versions(conn)[0] != info.get("haoscar_rowlog_begin")
        self.count = 0
        self.unkeyed = False
        if conn.execute(f"SELECT name FROM temp.sqlite_master WHERE name = '{LOG_TABLE}'").fetchone():
            self.count = conn.execute(f"SELECT count(*) FROM temp.{LOG_TABLE}").fetchone()[0]
            self.unkeyed = bool(conn.execute(f"SELECT 1 FROM temp.{LOG_TABLE} WHERE pk = ?", (UNKEYED,)).fetchone())

    def __bool__(self) -> bool:
        return self.count > 0 or self.schema_changed

    def __iter__(self) -> Iterator[RowChange]:
        if not self.count:
            return
        keys = replicated_tables(self.conn)
        # Each changed row once, in the order of its first change (parents before children as they were written).
        changed = self.conn.execute(
            f"SELECT tbl, pk FROM temp.{LOG_TABLE} WHERE pk != ? GROUP BY tbl, pk ORDER BY min(seq)", (UNKEYED,)
        )
        for table, raw in changed:
            names = keys.get(table)
            if not names:
                continue  # the table went away in this very transaction (a schema change: a full copy follows)
            key = dict(zip(names, json.loads(raw), strict=True))
            where = " AND ".join(f"{quote(k)} IS ?" for k in names)
            cursor = self.conn.execute(f"SELECT * FROM main.{quote(table)} WHERE {where}", tuple(key.values()))
            found = cursor.fetchone()
            row = dict(zip([d[0] for d in cursor.description], found, strict=True)) if found else None
            yield table, key, row

    def clear(self) -> None:
        if self.count:
            self.conn.execute(f"DELETE FROM temp.{LOG_TABLE}")
