"""Opening the cluster database: one SQLite file under the state directory, schema kept at Alembic's head.

Every command opens the database through :func:`open_database`, so a fresh machine (or a fresh ``--state-dir``)
works without a separate set-up step, and an older database is migrated before anything reads it.
"""

from __future__ import annotations

import fcntl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from haoscar.db import constants
from haoscar.db.models import Event
from haoscar.errors import UserError

# Defined in a module without SQLAlchemy, for the HA daemon's replication; the same names here, as before.
DB_FILE = constants.DB_FILE
BUSY_TIMEOUT_MS = constants.BUSY_TIMEOUT_MS
CapturedWrite = constants.CapturedWrite
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


# Called with a transaction's writes just before SQLite commits it (replication ships them to the standby here).
CommitHook = Callable[[list[CapturedWrite]], None]
_WRITES_KEY = "haoscar_writes"
_NOT_WRITES = ("SELECT", "BEGIN", "COMMIT", "END", "PRAGMA", "EXPLAIN", "ANALYZE")


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
        """Call ``hook(writes)`` with every write transaction's statements before SQLite commits it; an exception
        from the hook aborts the commit. Used by ``haoscar.replication`` for synchronous database replication."""
        if not self._commit_hooks:
            event.listen(self.engine, "before_cursor_execute", self._capture)
            event.listen(self.engine, "commit", self._before_commit)
            event.listen(self.engine, "rollback", self._forget)
        self._commit_hooks.append(hook)

    def _capture(
        self, conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        head = statement.lstrip()[:8].upper()
        if head.startswith(_NOT_WRITES) or (head.startswith("ROLLBACK") and " TO " not in statement.upper()):
            return
        conn.info.setdefault(_WRITES_KEY, []).append((statement, parameters, executemany))

    def _before_commit(self, conn: Connection) -> None:
        writes: list[CapturedWrite] = conn.info.pop(_WRITES_KEY, [])
        if writes:
            for hook in self._commit_hooks:
                hook(writes)

    def _forget(self, conn: Connection) -> None:
        conn.info.pop(_WRITES_KEY, None)

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
        """Bring the schema to Alembic's head; returns the revision now current."""
        from haoscar.db.migrate import upgrade_to_head

        with _lock(self.state_dir):
            return upgrade_to_head(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@contextmanager
def _lock(state_dir: Path) -> Iterator[None]:
    """Serialise schema upgrades between processes: two commands on a fresh machine must not both create tables."""
    with (state_dir / f"{DB_FILE}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_database(state_dir: Path | str, *, upgrade: bool = True) -> Database:
    """The cluster database under ``state_dir`` (created if missing), migrated to the latest schema."""
    directory = Path(state_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the state directory {directory} ({exc.strerror}); "
            "choose a writable one with --state-dir or HAOSCAR_STATE_DIR"
        ) from None
    db = Database(directory)
    # The seam of synchronous replication: while this head's replication daemon runs as the source, every write
    # transaction (a schema upgrade too) is shipped to the standby before it commits (a no-op otherwise).
    from haoscar.replication.dbhook import attach_if_replicating

    attach_if_replicating(db)
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
