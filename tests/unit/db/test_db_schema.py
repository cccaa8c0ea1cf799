"""The cluster database file: created on first use, migrated by Alembic to exactly the models' schema."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from haoscar.cli.main import run
from haoscar.db import constants
from haoscar.db.images import nodes_using_image
from haoscar.db.migrate import head_revision, schema_status
from haoscar.db.models import Base, Event
from haoscar.db.session import open_database, record_event


def test_migrated_schema_matches_the_models(tmp_path: Path) -> None:
    db = open_database(tmp_path / "state")
    try:
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []
        status = schema_status(db.engine)
        assert status.current == head_revision() == constants.HEAD_REVISION == "0005"
        assert status.up_to_date
    finally:
        db.close()


def test_fresh_state_dir_gets_a_wal_database_with_foreign_keys(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    db = open_database(state)
    try:
        assert (state / "haoscar.db").is_file()
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        db.close()
    # Another process sees the same tables without any set-up step.
    with sqlite3.connect(state / "haoscar.db") as raw:
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"networks", "images", "groups", "nodes", "interfaces", "mac_sightings", "events", "settings"} <= tables


def test_session_commits_on_success_and_rolls_back_on_error(tmp_path: Path) -> None:
    db = open_database(tmp_path)
    try:
        with db.session() as session:
            record_event(session, "test.kept", "kept", node="node01", data={"n": 1})
        with pytest.raises(RuntimeError), db.session() as session:
            record_event(session, "test.lost", "lost")
            session.flush()
            raise RuntimeError("boom")
        with db.session() as session:
            events = list(session.scalars(select(Event)))
        assert [(e.kind, e.node, e.severity, e.data) for e in events] == [("test.kept", "node01", "info", {"n": 1})]
        with pytest.raises(ValueError, match="severity"), db.session() as session:
            record_event(session, "test.bad", "bad", severity="loud")
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Event)) == 1
    finally:
        db.close()


def test_db_upgrade_and_status_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path / "s")
    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "db", "status", "--json"])
    assert exit_info.value.code == 1
    before = json.loads(capsys.readouterr().out)
    assert before["exists"] is False and before["current"] is None and before["head"] == "0005"

    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "db", "upgrade"])
    assert exit_info.value.code == 0
    assert "upgraded from nothing to 0005" in capsys.readouterr().out

    with pytest.raises(SystemExit) as exit_info:
        run(["--state-dir", state, "db", "status", "--json"])
    assert exit_info.value.code == 0
    after = json.loads(capsys.readouterr().out)
    assert after["current"] == "0005" and after["up_to_date"] is True


def test_nodes_using_image_without_a_database_creates_nothing(tmp_path: Path) -> None:
    assert nodes_using_image(tmp_path, "oscarimage") == []
    assert list(tmp_path.iterdir()) == []
