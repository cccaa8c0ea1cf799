"""What replication keeps on disk (``state_dir/replication/state.json``) and what it reports.

``standby_stale`` is persisted on both heads: the active head sets it when its standby missed a change (the standby
was unreachable, its disk full, its key wrong), and tells the standby so when it can; it is cleared only after a
full resync. A head whose own copy is stale refuses to take over unless forced.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haoscar.fsutil import atomic_write

STATE_FILE = "state.json"
STATUS_FILE = "status.json"


def write_json_atomic(path: Path, data: dict[str, Any], fsync: bool = True) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True, default=str), durable=fsync, compare=False)
    if fsync:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


@dataclass
class PersistedState:
    """``standby_stale``: on the active head, its standby missed changes; on a standby, this head's own copy is
    behind (told by the active head, or set while catching up)."""

    standby_stale: bool = False
    stale_reason: str = ""
    stale_since: float | None = None
    role: str = "none"
    last_full_pass: float | None = None

    @classmethod
    def load(cls, repl_dir: Path) -> PersistedState:
        try:
            raw = json.loads((repl_dir / STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)

    def save(self, repl_dir: Path) -> None:
        write_json_atomic(repl_dir / STATE_FILE, asdict(self))


@dataclass
class ReplicationStatus:
    node: str
    role: str
    peer: str
    lag_s: float
    files_pending: int
    bytes_pending: int
    last_full_pass: float | None
    last_error: str | None
    standby_stale: bool
    stale_reason: str
    db_lsn: int
    db_connected: bool
    files_shipped: int = 0
    bytes_shipped: int = 0
    # source: the standby was told its copy is current after the witness dropped its mark; target: the active
    # head told this head so in this run. A takeover by the standby would be granted now.
    confirmed_current: bool = False
    # Exported trees: "fanotify" (writes through NFS file handles watched), "" (none exported) or why not watched;
    # handle_writes counts the writes through disconnected dentries it found (inotify saw none of them).
    handle_watch: str = ""
    handle_writes: int = 0
    updated: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        # Every field is a plain value: a flat copy is what asdict gives, without its recursive deep copy (this
        # runs every second on the daemon's loop, and for every status request: idle CPU, docs/benchmarks.md).
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReplicationStatus:
        return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})


def read_status(repl_dir: Path) -> ReplicationStatus | None:
    try:
        return ReplicationStatus.from_dict(json.loads((repl_dir / STATUS_FILE).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def may_take_over(state: PersistedState, force: bool) -> tuple[bool, str]:
    """Whether this head's data allows it to become active, and the sentence that says why (loudly when forced)."""
    if not state.standby_stale:
        return True, "replicated data is current"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(state.stale_since or 0))
    what = f"this head's replicated data is STALE since {since} ({state.stale_reason or 'unknown reason'})"
    if force:
        return True, f"FORCED takeover although {what}: changes made on the other head since then are missing here"
    return False, f"{what}; taking over would lose those changes: refused (`haoscar ha takeover --force` overrides)"
