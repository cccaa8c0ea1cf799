"""Network installation as the head sees it: the live progress of installing nodes, and its settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from haoscar.commands.env import Env
from haoscar.errors import FieldError, ref
from haoscar.provision.install_progress import (
    MonitorRow,
    expire_stalled,
    monitor_rows,
    set_stall_timeout,
    stall_timeout,
)
from haoscar.provision.install_tokens import check_token_ttl, set_token_ttl, token_ttl
from haoscar.spec.nodes import expand_nodeset

__all__ = ["InstallRow", "InstallSettings", "InstallSnapshot", "MonitorInstalls", "configure", "monitor", "snapshot"]


@dataclass(frozen=True)
class MonitorInstalls:
    nodeset: str | None = None
    """Only these nodes (None: all)."""
    follow: bool = False
    """Keep reporting every ``interval`` seconds until no node is installing."""
    interval: float = 1.0


@dataclass(frozen=True)
class InstallRow:
    """One node: its state in the database and, while there are any, the installer's live numbers."""

    node: str
    install_state: str
    detail: str
    stage: str | None = None
    percent: int | None = None
    bytes: int | None = None
    mb_per_s: float | None = None
    elapsed_s: float | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class InstallSnapshot:
    rows: list[InstallRow] = field(default_factory=list)

    @property
    def installing(self) -> int:
        return sum(r.install_state == "installing" for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {"nodes": [r.as_dict() for r in self.rows], "installing": self.installing}


@dataclass(frozen=True)
class InstallSettings:
    stall_timeout: float | None = None
    """Seconds without a report before an installing node counts as failed (1-86400); None keeps it."""
    token_ttl: float | None = None
    """Seconds a node's install credential stays valid after its boot (60 s to 7 days); None keeps it."""


def _row(row: MonitorRow, now: float) -> InstallRow:
    if row.progress is None:
        return InstallRow(row.node, row.install_state, row.detail)
    live = row.progress.as_dict(now)
    return InstallRow(
        row.node,
        row.install_state,
        row.detail,
        stage=live["stage"],
        percent=live["percent"],
        bytes=live["bytes"],
        mb_per_s=live["mb_per_s"],
        elapsed_s=live["elapsed_s"],
        reason=live["reason"],
    )


def snapshot(env: Env, request: MonitorInstalls) -> InstallSnapshot:
    """Every installing (or installed, or failed) node now; nodes silent past the stall timeout become failed."""
    nodes = set(expand_nodeset(request.nodeset)) if request.nodeset else None
    now = env.clock.monotonic()
    expire_stalled(env.database, env.state_dir, now=now)
    return InstallSnapshot([_row(row, now) for row in monitor_rows(env.database, env.state_dir, nodes)])


def monitor(
    env: Env, request: MonitorInstalls, *, on_snapshot: Callable[[InstallSnapshot], None] | None = None
) -> InstallSnapshot:
    """A snapshot, or with ``follow`` one every ``interval`` seconds (each given to ``on_snapshot``) until no node
    is installing; returns the last."""
    if request.interval <= 0:
        raise FieldError("interval", f"{request.interval:g} must be more than 0 seconds, e.g. 1", sep=": ", bare=True)
    while True:
        current = snapshot(env, request)
        if on_snapshot is not None:
            on_snapshot(current)
        if not request.follow or not current.installing:
            return current
        time.sleep(request.interval)


def configure(env: Env, request: InstallSettings) -> InstallSettings:
    """Store the settings of network installation that the request names; returns them all as stored."""
    if request.stall_timeout is None and request.token_ttl is None:
        raise FieldError(
            "stall_timeout",
            f"{ref('stall_timeout')}, {ref('token_ttl')}: name at least one setting to change",
            sep=None,
            bare=True,
        )
    db = env.database
    if request.token_ttl is not None:  # checked (and refused) before anything is written
        check_token_ttl(request.token_ttl)
    stall = set_stall_timeout(db, request.stall_timeout) if request.stall_timeout is not None else stall_timeout(db)
    ttl = set_token_ttl(db, request.token_ttl) if request.token_ttl is not None else token_ttl(db)
    return InstallSettings(stall_timeout=stall, token_ttl=ttl)
