"""Head-node data replication: files (inotify + rsync) and the cluster database (synchronous statement shipping)
from the active head to the standby; see docs/replication.md.

The names are loaded on first use: every command that opens the database imports ``replication.dbhook``, which
needs none of the manager (start-up time)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from haoscar.replication.manager import CatchUpReport, ReplicationManager
    from haoscar.replication.state import ReplicationStatus

_HOME = {
    "CatchUpReport": "haoscar.replication.manager",
    "ReplicationManager": "haoscar.replication.manager",
    "ReplicationStatus": "haoscar.replication.state",
}

__all__ = ["CatchUpReport", "ReplicationManager", "ReplicationStatus"]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    try:  # a submodule, as ``haoscar.replication.X`` was reachable when this package imported its modules eagerly
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":  # the submodule exists and lacks something itself
            raise
        raise AttributeError(f"module 'haoscar.replication' has no attribute {name!r}") from None
