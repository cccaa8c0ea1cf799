"""Opening the cluster database: one SQLite file under the state directory, schema kept at Alembic's head.

Every command opens the database through :func:`open_database`, so a fresh machine (or a fresh ``--state-dir``)
works without a separate set-up step, and an older database is migrated before anything reads it.
"""

from __future__ import annotations

import fcntl
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from haoscar.db import constants, rowlog
from haoscar.db.models import Event
from haoscar.db.peek import schema_revision
from haoscar.db.rowlog import RowChanges
from haoscar.errors import UserError

# Defined in a module without SQLAlchemy, for the HA daemon's replication; the same names here, as before.
DB_FILE = constants.DB_FILE
BUSY_TIMEOUT_MS = constants.BUSY_TIMEOUT_MS
SEVERITIES = ("debug", "info", "warning", "error", "critical")
READONLY_OPTION = "haoscar_readonly"


def _on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL lets readers (node list, the DHCP engineer's config writer) run while a command writes.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        # SQLite ignores REFERENCES unless asked, per connection.
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()
    # Let SQLAlchemy, not the sqlite3 module, decide when a transaction begins (see _on_begin).
    dbapi_connection.isolation_level = None


def _on_begin(connection: Connection) -> None:
    """Writers begin IMMEDIATE: they take the write lock up front and wait for it (busy timeout). A deferred
    transaction that reads and then writes fails at once with "database is locked" when another process wrote in
    between, which is what two `node add` run side by side would otherwise see."""
    readonly = connection.get_execution_options().get(READONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# Called with a write transaction's row changes just before SQLite commits it (replication ships them to the
# standby here); an exception from the hook aborts the commit. See haoscar.db.rowlog for how rows are captured.
CommitHook = Callable[[RowChanges], None]


class Database:
    """The engine and session factory for ``state_dir/haoscar.db``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_FILE
        self.url = f"sqlite:///{self.path}"
        self.engine: Engine = create_engine(self.url)
        event.listen(self.engine, "connect", _on_connect)
        event.listen(self.engine, "begin", _on_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._commit_hooks: list[CommitHook] = []

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Call ``hook(changes)`` with every write transaction's changed rows before SQLite commits it; an exception
        from the hook aborts the commit. Used by ``haoscar.replication`` for synchronous database replication."""
        if not self._commit_hooks:
            event.listen(self.engine, "begin", self._prepare_capture)  # after _on_begin: inside the transaction
            event.listen(self.engine, "commit", self._before_commit)
        self._commit_hooks.append(hook)

    def _prepare_capture(self, conn: Connection) -> None:
        if not conn.get_execution_options().get(READONLY_OPTION, False):
            rowlog.prepare(_driver(conn), conn.connection.info)

    def _before_commit(self, conn: Connection) -> None:
        if conn.get_execution_options().get(READONLY_OPTION, False):
            return
        changes = RowChanges(_driver(conn), conn.connection.info)
        if changes:
            for hook in self._commit_hooks:
                hook(changes)
            changes.clear()

    @contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends normally, rolled back on any error.

        A writing session holds SQLite's write lock from its start; ``readonly`` sessions never block writers."""
        session = self._sessions()
        try:
            if readonly:
                session.connection(execution_options={READONLY_OPTION: True})
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def upgrade(self) -> str | None:
        """Bring the schema to Alembic's head; returns the revision now current. A database at
        ``constants.HEAD_REVISION`` costs one query (Alembic is imported only when there is something to do)."""
        if self._revision() == constants.HEAD_REVISION:
            return constants.HEAD_REVISION
        from haoscar.db.migrate import upgrade_to_head

        with _lock(self.state_dir):
            return upgrade_to_head(self.engine)

    def _revision(self) -> str | None:
        with self.engine.connect() as connection:
            return schema_revision(_driver(connection))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _driver(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


@contextmanager
def _lock(state_dir: Path) -> Iterator[None]:
    """Serialise schema upgrades between processes: two commands on a fresh machine must not both create tables."""
    with (state_dir / f"{DB_FILE}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Called with the freshly opened database before anything (a schema upgrade included) writes to it. The layers
# above inject what a process needs here: replication's commit hook on a head (see haoscar.commands.wiring), so this
# package never imports haoscar.replication.
OnOpen = Callable[[Database], None]


def open_database(state_dir: Path | str, *, upgrade: bool = True, on_open: Sequence[OnOpen] = ()) -> Database:
    """The cluster database under ``state_dir`` (created if missing), migrated to the latest schema.

    ``on_open`` hooks run first, before the upgrade, so that they see every write of this process."""
    directory = Path(state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the state directory {directory} ({exc.strerror}); "
            "choose a writable one with --state-dir or HAOSCAR_STATE_DIR"
        ) from None
    db = Database(directory)
    for hook in on_open:
        hook(db)
    if upgrade:
        db.upgrade()
    return db


def record_event(
    session: Session,
    kind: str,
    message: str,
    node: str | None = None,
    *,
    severity: str = "info",
    data: dict[str, Any] | None = None,
) -> Event:
    """Add an event to the session (written with the rest of the transaction, or not at all)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(SEVERITIES)}")
    entry = Event(kind=kind, message=message, node=node, severity=severity, data=data or {})
    session.add(entry)
    return entry
