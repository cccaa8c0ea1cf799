"""Facts about the cluster database that code without SQLAlchemy needs: its file name, the busy timeout, the shape
of a captured write.

The HA daemon's replication (``haoscar.replication``) works on the SQLite file with the ``sqlite3`` module and only
needs these; importing them from ``haoscar.db.session`` would load SQLAlchemy (about 17 MB of resident memory) into
the long-running daemon for three constants.
"""

from __future__ import annotations

from typing import Any

DB_FILE = "haoscar.db"
# Long enough to ride out another haoscar process writing (an apply of thousands of nodes takes about a second),
# short enough that a stuck writer shows up as an error instead of a hang.
BUSY_TIMEOUT_MS = 15_000
# The newest migration's revision. A database already there is opened without importing Alembic (about 0.2 s of
# every command's start-up, `haoscar exec` included); tests/unit/db/test_db_schema.py fails when a new migration is
# added without changing this.
HEAD_REVISION = "0005"
# One write of a transaction as the DBAPI saw it: (SQL, parameters, executemany).
CapturedWrite = tuple[str, Any, bool]
