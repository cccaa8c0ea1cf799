"""The database statement log: capture through the session seam, wire encoding, LSN order and gaps, full copies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from haoscar.db.models import Event
from haoscar.db.session import CapturedWrite, open_database, record_event
from haoscar.replication import dblog


def test_the_commit_hook_sees_only_a_transactions_writes(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    seen: list[list[CapturedWrite]] = []
    db.add_commit_hook(seen.append)
    with db.session(readonly=True) as session:
        session.query(Event).count()
    with db.session() as session:
        record_event(session, "test", "one")
        record_event(session, "test", "two")
    with pytest.raises(RuntimeError), db.session() as session:
        record_event(session, "test", "rolled back")
        session.flush()
        raise RuntimeError("abort")
    db.close()
    assert len(seen) == 1  # the read and the rolled-back transaction ship nothing
    statements = [sql for sql, _params, _many in seen[0]]
    assert all(sql.lstrip().upper().startswith("INSERT INTO EVENTS") for sql in statements)
    assert "one" in str(seen[0]) and "two" in str(seen[0])


def test_a_hook_that_raises_aborts_the_commit(tmp_path: Path) -> None:
    db = open_database(tmp_path)

    def refuse(_writes: list[CapturedWrite]) -> None:
        raise RuntimeError("no")

    db.add_commit_hook(refuse)
    with pytest.raises(RuntimeError), db.session() as session:
        record_event(session, "test", "never")
    db.close()
    conn = sqlite3.connect(tmp_path / "haoscar.db")
    assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_parameters_survive_the_wire() -> None:
    writes: list[CapturedWrite] = [
        ("INSERT INTO t VALUES (?, ?, ?)", (1, b"\x00\xff", None), False),
        ("INSERT INTO t VALUES (:a, :b, :c)", {"a": 2.5, "b": "x", "c": True}, False),
        ("INSERT INTO t VALUES (?, ?, ?)", [(3, "a", None), (4, "b", b"z")], True),
    ]
    decoded = dblog.decode_writes(dblog.encode_writes(writes))
    assert decoded[0] == ("INSERT INTO t VALUES (?, ?, ?)", (1, b"\x00\xff", None), False)
    assert decoded[1][1] == {"a": 2.5, "b": "x", "c": True}
    assert decoded[2][1] == [(3, "a", None), (4, "b", b"z")]
    with pytest.raises(dblog.Unencodable):
        dblog.encode_writes([("INSERT", (object(),), False)])


def _standby(tmp_path: Path) -> sqlite3.Connection:
    source = sqlite3.connect(":memory:")
    source.execute("CREATE TABLE t (x)")
    source.commit()
    conn = dblog.connect(tmp_path / "standby.db")
    dblog.restore(conn, dblog.snapshot(source), "e1")
    return conn


def test_transactions_apply_in_order_and_a_gap_is_refused(tmp_path: Path) -> None:
    conn = _standby(tmp_path)
    assert dblog.position(conn) == ("e1", 0)
    dblog.apply_transaction(conn, "e1", 1, [("INSERT INTO t VALUES (?)", (1,), False)])
    with pytest.raises(dblog.Gap) as gap:
        dblog.apply_transaction(conn, "e1", 3, [("INSERT INTO t VALUES (?)", (3,), False)])
    assert gap.value.expected_lsn == 2
    with pytest.raises(dblog.Gap):
        dblog.apply_transaction(conn, "other-epoch", 2, [("INSERT INTO t VALUES (?)", (2,), False)])
    with pytest.raises(sqlite3.OperationalError):  # a failing statement leaves neither data nor LSN behind
        dblog.apply_transaction(
            conn, "e1", 2, [("INSERT INTO t VALUES (?)", (2,), False), ("INSERT INTO nope VALUES (1)", (), False)]
        )
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert dblog.position(conn) == ("e1", 1)


def test_a_full_copy_replaces_the_standby_and_starts_an_epoch(tmp_path: Path) -> None:
    conn = _standby(tmp_path)
    dblog.apply_transaction(conn, "e1", 1, [("INSERT INTO t VALUES (?)", (1,), False)])
    wal_source = dblog.connect(tmp_path / "active.db")  # a WAL database, as the active head's is
    wal_source.execute("CREATE TABLE t (x)")
    wal_source.execute("INSERT INTO t VALUES (42)")
    dblog.restore(conn, dblog.snapshot(wal_source), "e2")
    assert conn.execute("SELECT x FROM t").fetchall() == [(42,)]
    assert dblog.position(conn) == ("e2", 0)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
