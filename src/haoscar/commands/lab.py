"""``haoscar lab ...``: the virtual cluster's life cycle and faults, as commands.

``haoscar.lab`` pulls in pyroute2: it is imported inside each command, so importing this module costs nothing.
Every command that touches a lab needs root; the check comes before the state directory is read (a non-root user
may not even see it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from haoscar.commands.env import Env
from haoscar.errors import FieldError

if TYPE_CHECKING:
    from haoscar.lab import Lab, LabStatus

__all__ = [
    "CrashHost",
    "ExecInHost",
    "Exited",
    "FreezeHost",
    "HealLab",
    "LabDown",
    "LabGone",
    "LabUp",
    "LossOnLink",
    "PartitionHosts",
    "RestoreHost",
    "SetLink",
    "ShowLab",
    "ThawHost",
    "lab_crash",
    "lab_down",
    "lab_exec",
    "lab_freeze",
    "lab_heal",
    "lab_link",
    "lab_loss",
    "lab_partition",
    "lab_restore",
    "lab_status",
    "lab_thaw",
    "lab_up",
]


def _open(env: Env, name: str) -> Lab:
    from haoscar.lab import Lab, require_root

    require_root("`haoscar lab`")
    return Lab.open(name, env.state_dir)


@dataclass(frozen=True)
class LabUp:
    spec: Path
    name: str = "lab"


def lab_up(env: Env, request: LabUp) -> LabStatus:
    """Build the lab of a spec; the report is its status (hosts, networks, faults)."""
    from haoscar.lab import Lab

    return Lab.up(request.spec, request.name, env.state_dir).status()


@dataclass(frozen=True)
class LabDown:
    name: str = "lab"


@dataclass(frozen=True)
class LabGone:
    name: str
    was_up: bool  # False: there was nothing to take down


def lab_down(env: Env, request: LabDown) -> LabGone:
    from haoscar.lab import down_lab

    return LabGone(request.name, down_lab(request.name, env.state_dir))


@dataclass(frozen=True)
class ShowLab:
    name: str = "lab"


def lab_status(env: Env, request: ShowLab) -> LabStatus:
    return _open(env, request.name).status()


@dataclass(frozen=True)
class ExecInHost:
    host: str
    argv: list[str]
    name: str = "lab"


@dataclass(frozen=True)
class Exited:
    code: int  # the command's exit status; 128 + N when a signal N ended it


def lab_exec(env: Env, request: ExecInHost) -> Exited:
    """Run a command inside a host with this process's stdin/stdout/stderr, until it ends."""
    proc = _open(env, request.name).popen(request.host, request.argv)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        code = proc.wait()
    return Exited(code if code >= 0 else 128 - code)


@dataclass(frozen=True)
class CrashHost:
    host: str
    name: str = "lab"


def lab_crash(env: Env, request: CrashHost) -> CrashHost:
    """Power loss: every process of the host killed, its links down."""
    _open(env, request.name).crash(request.host)
    return request


@dataclass(frozen=True)
class RestoreHost:
    host: str
    name: str = "lab"


def lab_restore(env: Env, request: RestoreHost) -> RestoreHost:
    """Boot a crashed host again: links up, the spec's addresses only, /run emptied."""
    _open(env, request.name).restore(request.host)
    return request


@dataclass(frozen=True)
class SetLink:
    host: str
    iface: str
    state: str  # "up" or "down"
    name: str = "lab"


def lab_link(env: Env, request: SetLink) -> SetLink:
    if request.state not in ("up", "down"):
        raise FieldError("state", f"{request.state!r}: say up or down", bare=True)
    _open(env, request.name).link(request.host, request.iface, request.state == "up")
    return request


@dataclass(frozen=True)
class PartitionHosts:
    a: str
    b: str
    network: str | None = None  # None: every network the two hosts share
    name: str = "lab"


def lab_partition(env: Env, request: PartitionHosts) -> PartitionHosts:
    _open(env, request.name).partition(request.a, request.b, request.network)
    return request


@dataclass(frozen=True)
class HealLab:
    name: str = "lab"


def lab_heal(env: Env, request: HealLab) -> HealLab:
    """Remove every partition and packet loss."""
    _open(env, request.name).heal()
    return request


@dataclass(frozen=True)
class FreezeHost:
    host: str
    links: bool = False  # also set its links down, like a paused VM
    name: str = "lab"


def lab_freeze(env: Env, request: FreezeHost) -> FreezeHost:
    _open(env, request.name).freeze(request.host, links=request.links)
    return request


@dataclass(frozen=True)
class ThawHost:
    host: str
    name: str = "lab"


def lab_thaw(env: Env, request: ThawHost) -> ThawHost:
    _open(env, request.name).thaw(request.host)
    return request


@dataclass(frozen=True)
class LossOnLink:
    host: str
    iface: str
    percent: int  # 0-100; 0 removes the loss
    name: str = "lab"


def lab_loss(env: Env, request: LossOnLink) -> LossOnLink:
    _open(env, request.name).loss(request.host, request.iface, request.percent)
    return request
