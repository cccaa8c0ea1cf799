"""``haoscar db ...``: the cluster database's schema (Alembic migrations)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.commands.wiring import open_cluster_database
from haoscar.db.constants import DB_FILE
from haoscar.db.migrate import head_revision, schema_status
from haoscar.db.session import Database

__all__ = ["DatabaseStatus", "DatabaseUpgraded", "ShowDatabase", "UpgradeDatabase", "db_status", "db_upgrade"]


@dataclass(frozen=True)
class UpgradeDatabase:
    """Create the database if needed and migrate its schema to the latest revision."""


@dataclass(frozen=True)
class DatabaseUpgraded:
    path: Path
    before: str | None  # None: there was no schema yet
    now: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.now


def db_upgrade(env: Env, request: UpgradeDatabase) -> DatabaseUpgraded:
    # Opened without the automatic upgrade so that the revision before it can be reported.
    db = open_cluster_database(env.state_dir, upgrade=False)
    try:
        before = schema_status(db.engine).current
        now = db.upgrade()
    finally:
        db.close()
    return DatabaseUpgraded(db.path, before, now)


@dataclass(frozen=True)
class ShowDatabase:
    """The database file and its schema revision; nothing is created or migrated."""


@dataclass(frozen=True)
class DatabaseStatus:
    path: Path
    exists: bool
    current: str | None
    head: str | None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def as_dict(self) -> dict[str, Any]:
        return {
            "database": str(self.path),
            "exists": self.exists,
            "current": self.current,
            "head": self.head,
            "up_to_date": self.up_to_date,
        }


def db_status(env: Env, request: ShowDatabase) -> DatabaseStatus:
    path = env.state_dir / DB_FILE
    if not path.exists():
        return DatabaseStatus(path, False, None, head_revision())
    db = Database(path.parent)
    try:
        state = schema_status(db.engine)
    finally:
        db.close()
    return DatabaseStatus(path, True, state.current, state.head)
