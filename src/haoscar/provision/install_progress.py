"""The head node's side of an installation: progress reports, completion, failure, and stalled installs.

Stage changes, completion and failure go to the cluster database (``install_state`` and ``install_detail``, what
``haoscar node list`` shows; an event each). The live numbers (percent, bytes, rate), reported every second, go
to one small JSON file per node under ``STATE/install/`` so that a thousand installing nodes do not turn the
database into a write queue; ``haoscar install monitor`` reads both.

A node that stops reporting while installing (powered off, crashed, cable pulled) is marked
``failed: STAGE: no progress for N s`` by whoever looks first: the boot server's watcher or the monitor.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from haoscar.db.models import Node, Setting
from haoscar.db.session import record_event
from haoscar.errors import FieldError, UserError
from haoscar.fsutil import atomic_write
from haoscar.provision.install_plan import node_for_mac
from haoscar.provision.install_states import WATCHED, InstallState, set_install_state
from haoscar.provision.netboot_snapshot import Database
from haoscar.spec.types import parse_mac

# Installer stages in order; ``done`` only ever appears as the completion report.
STAGES: tuple[str, ...] = ("dhcp", "node", "disk", "image", "configure", "bootloader", "done")
SETTING_STALL = "install.stall_timeout"
DEFAULT_STALL_TIMEOUT = 60.0


@dataclass(frozen=True)
class Progress:
    """One node's current (or last) installation as the head saw it."""

    node: str
    mac: str
    state: str  # an InstallState: installing | installed | failed
    stage: str
    percent: int
    bytes: int
    rate: float  # bytes per second during the image stage
    detail: str
    started: float  # wall clock, for people
    started_mono: float  # monotonic clock (system-wide on Linux), for durations
    updated_mono: float
    reason: str = ""
    seconds: float = 0.0
    marks: dict[str, float] = field(default_factory=dict)  # stage -> monotonic time of its first report

    def elapsed(self, now_mono: float) -> float:
        end = now_mono if self.state == InstallState.INSTALLING else self.updated_mono
        return max(0.0, end - self.started_mono)

    def as_dict(self, now_mono: float | None = None) -> dict[str, Any]:
        data = asdict(self)
        data["elapsed_s"] = round(self.elapsed(time.monotonic() if now_mono is None else now_mono), 1)
        data["mb_per_s"] = round(self.rate / 1e6, 2)
        return data


def progress_dir(state_dir: Path) -> Path:
    return state_dir / "install"


def _path(state_dir: Path, node: str) -> Path:
    return progress_dir(state_dir) / f"{node}.json"


def read_one(state_dir: Path, node: str) -> Progress | None:
    try:
        return Progress(**json.loads(_path(state_dir, node).read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def read_all(state_dir: Path) -> list[Progress]:
    directory = progress_dir(state_dir)
    if not directory.is_dir():
        return []
    found = [read_one(state_dir, path.stem) for path in sorted(directory.glob("*.json"))]
    return [p for p in found if p is not None]


def _write(state_dir: Path, progress: Progress) -> None:
    atomic_write(_path(state_dir, progress.node), json.dumps(asdict(progress)) + "\n")


def _check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise UserError(f"unknown install stage {stage!r}; the installer reports one of: {', '.join(STAGES)}")
    return stage


def _mac(text: str) -> str:
    try:
        return parse_mac(text)
    except ValueError as exc:
        raise UserError(f"{exc}") from None


def _set_node(db: Database, mac: str, state: InstallState, detail: str, event: tuple[str, str, str] | None) -> str:
    """Set a node's install state (through the transition table) and detail, and add an event; returns the node's
    name."""
    with db.session() as session:
        node, _iface = node_for_mac(session, mac)
        set_install_state(node, state)
        node.install_detail = detail
        if event is not None:
            kind, message, severity = event
            record_event(session, kind, message, node.name, severity=severity, data={"mac": mac, "detail": detail})
        return node.name


def record_progress(
    db: Database,
    state_dir: Path,
    mac: str,
    stage: str,
    percent: int,
    *,
    nbytes: int = 0,
    detail: str = "",
    now: float | None = None,
) -> Progress:
    """A progress report from the installer of the node owning ``mac``."""
    mac = _mac(mac)
    _check_stage(stage)
    if not 0 <= percent <= 100:
        raise UserError(f"percent {percent} is out of range; report 0-100")
    now_mono = time.monotonic() if now is None else now
    with db.session() as session:
        node_name = node_for_mac(session, mac)[0].name
    previous = read_one(state_dir, node_name)
    fresh = previous is None or previous.state != InstallState.INSTALLING or stage in ("dhcp", "node")
    if fresh:
        current = Progress(
            node_name, mac, InstallState.INSTALLING.value, stage, percent, nbytes, 0.0, detail, time.time(),
            now_mono, now_mono, marks={stage: now_mono},
        )  # fmt: skip
    else:
        assert previous is not None
        rate = previous.rate
        span = now_mono - previous.updated_mono
        if stage == "image" and previous.stage == "image" and nbytes > previous.bytes and span > 0:
            rate = (nbytes - previous.bytes) / span
        marks = previous.marks if stage in previous.marks else {**previous.marks, stage: now_mono}
        current = replace(
            previous, stage=stage, percent=percent, bytes=nbytes, rate=rate, detail=detail, updated_mono=now_mono,
            marks=marks,
        )  # fmt: skip
    _write(state_dir, current)
    if fresh or previous is None or previous.stage != stage:
        event = ("install-start", f"installing {node_name}", "info") if fresh else None
        _set_node(db, mac, InstallState.INSTALLING, stage, event)
    return current


def record_done(
    db: Database,
    state_dir: Path,
    mac: str,
    seconds: float = 0.0,
    *,
    now: float | None = None,
    image_version: int | None = None,
) -> str:
    """The node is installed: it boots from its disk from now on (localboot) and its iPXE script says so;
    ``image_version``: the version of its image the installer received (``node list`` shows it)."""
    from haoscar.provision.netboot_sync import netboot_sync

    mac = _mac(mac)
    now_mono = time.monotonic() if now is None else now
    with db.session() as session:
        node, _iface = node_for_mac(session, mac)
        node.boot_mode = "localboot"
        set_install_state(node, InstallState.INSTALLED)
        node.install_detail = ""
        node.image_version = image_version
        name = node.name
        record_event(session, "install-done", f"{name} installed in {seconds:.0f} s", name, data={"mac": mac})
    previous = read_one(state_dir, name)
    if previous is not None:
        _write(
            state_dir,
            replace(
                previous,
                state=InstallState.INSTALLED.value,
                stage="done",
                marks={**previous.marks, "done": now_mono},
                percent=100,
                updated_mono=now_mono,
                seconds=seconds or previous.elapsed(now_mono),
            ),
        )
    netboot_sync(db, state_dir, nodes={name})
    return name


def record_failed(db: Database, state_dir: Path, mac: str, stage: str, reason: str, *, now: float | None = None) -> str:
    mac = _mac(mac)
    now_mono = time.monotonic() if now is None else now
    reason = " ".join(reason.split())[:500] or "no reason given"
    detail = f"{stage}: {reason}"
    name = _set_node(db, mac, InstallState.FAILED, detail, ("install-failed", f"install failed: {detail}", "error"))
    previous = read_one(state_dir, name)
    base = previous or Progress(
        name, mac, InstallState.FAILED.value, stage, 0, 0, 0.0, "", time.time(), now_mono, now_mono
    )
    _write(state_dir, replace(base, state=InstallState.FAILED.value, stage=stage, reason=reason, updated_mono=now_mono))
    return name


def stall_timeout(db: Database) -> float:
    with db.session() as session:
        value = session.scalar(select(Setting.value).where(Setting.key == SETTING_STALL))
    return float(value) if value is not None else DEFAULT_STALL_TIMEOUT


def set_stall_timeout(db: Database, seconds: float) -> float:
    if not 1 <= seconds <= 86400:
        detail = f"stall timeout {seconds:g} s is out of range; use 1-86400 s (default {DEFAULT_STALL_TIMEOUT:g})"
        raise FieldError("stall_timeout", detail, sep=None)
    with db.session() as session:
        row = session.get(Setting, SETTING_STALL)
        if row is None:
            session.add(Setting(key=SETTING_STALL, value=seconds))
        else:
            row.value = seconds
    return seconds


def expire_stalled(
    db: Database, state_dir: Path, timeout: float | None = None, *, now: float | None = None
) -> list[str]:
    """Mark every node that has been silent for ``timeout`` seconds while installing as failed; their names."""
    limit = stall_timeout(db) if timeout is None else timeout
    now_mono = time.monotonic() if now is None else now
    expired = []
    for progress in read_all(state_dir):
        silent = now_mono - progress.updated_mono
        if progress.state == InstallState.INSTALLING and silent >= limit:
            record_failed(db, state_dir, progress.mac, progress.stage, f"no progress for {limit:g} s", now=now_mono)
            expired.append(progress.node)
    return expired


@dataclass(frozen=True)
class MonitorRow:
    """One line of ``haoscar install monitor``: the database's state, the live numbers when there are any."""

    node: str
    install_state: str
    detail: str
    progress: Progress | None


def monitor_rows(db: Database, state_dir: Path, nodes: Collection[str] | None = None) -> list[MonitorRow]:
    live = {p.node: p for p in read_all(state_dir)}
    with db.session() as session:
        query = select(Node.name, Node.install_state, Node.install_detail).order_by(Node.name)
        rows = session.execute(query).all()
    out = []
    for name, state, detail in rows:
        if nodes is not None and name not in nodes:
            continue
        if name in live or state in WATCHED:
            out.append(MonitorRow(name, state, detail or "", live.get(name)))
    return out
