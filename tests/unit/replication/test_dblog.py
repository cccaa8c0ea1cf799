"""The database change log: row capture through the session seam, wire encoding, applying rows as data (never SQL)
against the standby's own schema, LSN order and gaps, full copies."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from haoscar.db.models import Event
from haoscar.db.rowlog import RowChange, RowChanges
from haoscar.db.session import open_database, record_event
from haoscar.replication import dblog
from haoscar.replication.dbhook import request_lines


def _capture(tmp_path: Path) -> tuple[Any, list[list[RowChange]]]:
    db = open_database(tmp_path)
    seen: list[list[RowChange]] = []
    db.add_commit_hook(lambda changes: seen.append(list(changes)))
    return db, seen


def test_the_commit_hook_sees_only_a_transactions_rows(tmp_path: Path) -> None:
    db, seen = _capture(tmp_path)
    with db.session(readonly=True) as session:
        session.query(Event).count()
    with db.session() as session:
        record_event(session, "test", "one")
        record_event(session, "test", "two")
    with pytest.raises(RuntimeError), db.session() as session:
        record_event(session, "test", "rolled back")
        session.flush()
        raise RuntimeError("abort")
    with db.session() as session:
        session.query(Event).filter(Event.message == "one").delete()
    db.close()
    assert len(seen) == 2  # the read and the rolled-back transaction ship nothing
    assert {(table, row["message"]) for table, _key, row in seen[0] if row} == {("events", "one"), ("events", "two")}
    assert all(key == {"id": row["id"]} for _t, key, row in seen[0] if row)
    assert seen[1] == [("events", {"id": 1}, None)]  # a deletion ships the key only


def test_a_hook_that_raises_aborts_the_commit(tmp_path: Path) -> None:
    db = open_database(tmp_path)

    def refuse(_changes: RowChanges) -> None:
        raise RuntimeError("no")

    db.add_commit_hook(refuse)
    with pytest.raises(RuntimeError), db.session() as session:
        record_event(session, "test", "never")
    db.close()
    conn = sqlite3.connect(tmp_path / "haoscar.db")
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_values_survive_the_wire() -> None:
    change: RowChange = ("t", {"id": 1}, {"id": 1, "b": b"\x00\xff", "n": None, "f": 2.5, "s": "x"})
    raw = json.loads(json.dumps(dblog.encode_change(change)))
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB, n TEXT, f REAL, s TEXT)")
    dblog.apply_changes(conn, dblog.schema(conn), [raw])
    assert conn.execute("SELECT id, b, n, f, s FROM t").fetchall() == [(1, b"\x00\xff", None, 2.5, "x")]
    with pytest.raises(dblog.Unencodable):
        dblog.encode_change(("t", {"id": 1}, {"id": 1, "b": object()}))


def test_a_large_transaction_is_cut_into_bounded_lines(tmp_path: Path) -> None:
    db, _seen = _capture(tmp_path)
    lines: list[bytes] = []
    db.add_commit_hook(lambda changes: lines.extend(request_lines(changes, part_bytes=10_000)))
    with db.session() as session:
        for i in range(300):
            record_event(session, "bulk", f"row {i} " + "x" * 200)
    db.close()
    requests = [json.loads(line) for line in lines]
    assert len(requests) > 5 and all(len(line) < 12_000 for line in lines)
    assert [r["op"] for r in requests] == ["part"] * (len(requests) - 1) + ["txn"]
    assert sum(len(r["changes"]) for r in requests) == 300


def _standby(tmp_path: Path) -> sqlite3.Connection:
    source = sqlite3.connect(":memory:")
    source.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
    source.commit()
    conn = dblog.connect(tmp_path / "standby.db")
    dblog.restore(conn, dblog.snapshot(source), "e1")
    return conn


def _row(x: int, y: str = "v") -> list[Any]:
    return ["t", {"x": x}, {"x": x, "y": y}]


def test_transactions_apply_in_order_and_a_gap_is_refused(tmp_path: Path) -> None:
    conn = _standby(tmp_path)
    assert dblog.position(conn) == ("e1", 0)
    dblog.apply_transaction(conn, "e1", 1, [_row(1)])
    with pytest.raises(dblog.Gap) as gap:
        dblog.apply_transaction(conn, "e1", 3, [_row(3)])
    assert gap.value.expected_lsn == 2
    with pytest.raises(dblog.Gap):
        dblog.apply_transaction(conn, "other-epoch", 2, [_row(2)])
    with pytest.raises(dblog.Refused):  # a failing change leaves neither data nor LSN behind
        dblog.apply_transaction(conn, "e1", 2, [_row(2), ["nope", {"x": 1}, {"x": 1}]])
    dblog.apply_transaction(conn, "e1", 2, [_row(1, "updated"), ["t", {"x": 5}, None]])
    assert conn.execute("SELECT x, y FROM t").fetchall() == [(1, "updated")]
    assert dblog.position(conn) == ("e1", 2)


@pytest.mark.parametrize(
    "change",
    [
        ["t; ATTACH DATABASE '{evil}' AS evil; --", {"x": 9}, {"x": 9, "y": "v"}],
        ["t", {"x": 9}, {"x": 9, "y = 1; ATTACH DATABASE '{evil}' AS evil; --": "v"}],
        ["t", {"x": 9}, {"x": 9, "unknown": "v"}],
        ["haoscar_replication", {"id": 1}, {"id": 1, "epoch": "mine", "lsn": 99}],
        ["sqlite_master", {"name": "x"}, {"name": "x", "sql": "CREATE TRIGGER ..."}],
        ["t", {"y": "v"}, {"x": 9, "y": "v"}],
        ["t", {"x": 9}, {"x": 10, "y": "v"}],
        ["t", {"x": 9}, {"x": 9, "y": {"$sql": "x'00'"}}],
        "ATTACH DATABASE '{evil}' AS evil",
    ],
    ids=["sql-in-table", "sql-in-column", "unknown-column", "lsn-table", "schema-table", "not-the-key",
         "row-off-its-key", "value-not-sql", "bare-sql"],
)  # fmt: skip
def test_a_crafted_change_is_refused_and_nothing_is_written(tmp_path: Path, change: Any) -> None:
    evil = tmp_path / "evil.db"
    conn = _standby(tmp_path)
    crafted = json.loads(json.dumps(change).replace("{evil}", str(evil)))
    with pytest.raises(dblog.Refused):
        dblog.apply_transaction(conn, "e1", 1, [_row(1), crafted])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    assert dblog.position(conn) == ("e1", 0)
    assert not evil.exists()
    assert [r[1] for r in conn.execute("PRAGMA database_list")] == ["main"]


def test_a_full_copy_replaces_the_standby_and_starts_an_epoch(tmp_path: Path) -> None:
    conn = _standby(tmp_path)
    dblog.apply_transaction(conn, "e1", 1, [_row(1)])
    wal_source = dblog.connect(tmp_path / "active.db")  # a WAL database, as the active head's is
    wal_source.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
    wal_source.execute("INSERT INTO t VALUES (42, 'a')")
    dblog.restore(conn, dblog.snapshot(wal_source), "e2")
    assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    assert dblog.position(conn) == ("e2", 0)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_full_copy_with_another_schema_or_a_trigger_is_refused(tmp_path: Path) -> None:
    conn = _standby(tmp_path)
    dblog.apply_transaction(conn, "e1", 1, [_row(1)])
    for extra in (
        "CREATE TRIGGER t_evil AFTER INSERT ON t BEGIN DELETE FROM t; END",
        "CREATE TABLE other (a)",
    ):
        copy = sqlite3.connect(":memory:")
        copy.execute("CREATE TABLE t (x INTEGER PRIMARY KEY, y TEXT)")
        copy.execute(extra)
        with pytest.raises(dblog.Refused):
            dblog.restore(conn, dblog.snapshot(copy), "e2")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert dblog.position(conn) == ("e1", 1)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger'").fetchone() == (0,)


def test_a_schema_change_is_not_shipped_as_rows_but_asks_for_a_full_copy(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    lines: list[bytes] = []
    db.add_commit_hook(lambda changes: lines.extend(request_lines(changes)))
    with db.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE extra (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO extra VALUES (1)")
    with db.session() as session:  # the next transaction is captured as rows again, the new table included
        record_event(session, "test", "after")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO extra VALUES (2)")
    db.close()
    requests = [json.loads(line) for line in lines]
    assert requests[0] == {"op": "dirty", "reason": "the schema changed"}
    assert requests[1]["op"] == "txn" and requests[1]["changes"][0][0] == "events"
    assert requests[2]["changes"] == [["extra", {"id": 2}, {"id": 2}]]
