"""Head-node data replication: files (inotify + rsync) and the cluster database (synchronous statement shipping)
from the active head to the standby; see docs/replication.md.

The names are loaded on first use: every command that opens the database imports ``replication.dbhook``, which
needs none of the manager (start-up time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from haoscar.lazynames import lazy_names

if TYPE_CHECKING:
    from haoscar.replication.manager import CatchUpReport, ReplicationManager
    from haoscar.replication.state import ReplicationStatus

_HOME = {
    "CatchUpReport": "haoscar.replication.manager",
    "ReplicationManager": "haoscar.replication.manager",
    "ReplicationStatus": "haoscar.replication.state",
}

__all__ = ["CatchUpReport", "ReplicationManager", "ReplicationStatus"]


__getattr__ = lazy_names(__name__, _HOME)
