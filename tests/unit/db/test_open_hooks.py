"""The database's registration point: the layers above attach what a process needs (replication's commit hook)
when the database opens; haoscar.db itself replicates nothing."""

from __future__ import annotations

from pathlib import Path

from haoscar.commands.env import Env
from haoscar.commands.wiring import open_cluster_database
from haoscar.db.session import Database, open_database, record_event
from haoscar.replication.config import DB_SOCKET
from haoscar.replication.dbhook import UNREPLICATED_MARK


def test_on_open_hooks_run_before_the_schema_upgrade_and_see_its_writes(tmp_path: Path) -> None:
    seen: list[int] = []

    def hook(db: Database) -> None:
        db.add_commit_hook(lambda _changes: seen.append(1))

    db = open_database(tmp_path, on_open=(hook,))
    assert seen, "the schema upgrade's transaction went past the hook"
    with db.session() as session:
        record_event(session, "test", "one change")
    db.close()
    assert len(seen) >= 2


def _replicating_head(state: Path) -> Path:
    """A head whose replication daemon is gone: its socket path exists but nobody listens."""
    (state / "replication").mkdir(parents=True)
    (state / "replication" / DB_SOCKET).touch()
    return state / "replication" / UNREPLICATED_MARK


def _commit(db: Database) -> None:
    with db.session() as session:
        record_event(session, "test", "a change on the active head")
    db.close()


def test_the_composition_root_ships_writes_and_the_bare_database_does_not(tmp_path: Path) -> None:
    bare = _replicating_head(tmp_path / "bare")
    _commit(open_database(tmp_path / "bare"))
    assert not bare.exists()

    wired = _replicating_head(tmp_path / "wired")
    _commit(open_cluster_database(tmp_path / "wired"))
    assert "replication daemon unreachable" in wired.read_text()


def test_a_command_environment_opens_the_replicated_database(tmp_path: Path) -> None:
    mark = _replicating_head(tmp_path)
    with Env(tmp_path) as env:
        _commit(env.database)
    assert mark.exists()
