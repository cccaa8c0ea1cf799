"""MAC addresses: collect them from the wire, give them to nodes, import and export them (OSCAR's Collect MAC
Address, Assign MAC to Node, Assign All, Import/Export MACs).

Every assignment goes through the one checker-and-writer, ``provision.netboot_macs.assign_in_session`` (it lives in
``provision`` because ``collect --auto`` and the standby clone assign below this layer); these commands add the
DHCP sync of the nodes that got a MAC, so that their next DISCOVER is answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from haoscar.commands.env import Env
from haoscar.errors import FieldError
from haoscar.provision import mac_collect, netboot_macs
from haoscar.provision.mac_collect import CollectResult, FrameSource, Seen
from haoscar.provision.netboot_macs import Assignment, Sighting
from haoscar.provision.netboot_sync import SyncReport, netboot_sync

__all__ = [
    "AssignAll",
    "AssignMac",
    "Assigned",
    "Assignment",
    "CollectMacs",
    "CollectResult",
    "ExportMacs",
    "Exported",
    "ImportMacs",
    "Seen",
    "Sighting",
    "assign",
    "assign_all",
    "collect",
    "export_csv",
    "import_csv",
    "list_sightings",
]


@dataclass(frozen=True)
class CollectMacs:
    interface: str
    timeout: float = 60.0
    auto: bool = False
    count: int | None = None
    """Stop after this many new MACs (None: only the timeout stops)."""


@dataclass(frozen=True)
class AssignMac:
    node: str
    mac: str


@dataclass(frozen=True)
class AssignAll:
    nodeset: str


@dataclass(frozen=True)
class ImportMacs:
    file: Path


@dataclass(frozen=True)
class ExportMacs:
    file: Path


@dataclass
class Assigned:
    assignments: list[Assignment] = field(default_factory=list)
    sync: SyncReport | None = None

    def as_dict(self) -> dict[str, object]:
        return {"assigned": [a.as_dict() for a in self.assignments]}


@dataclass(frozen=True)
class Exported:
    file: Path
    nodes: int

    def as_dict(self) -> dict[str, object]:
        return {"file": str(self.file), "nodes": self.nodes}


def _check_collect(request: CollectMacs) -> None:
    if not request.interface.strip():
        raise FieldError("interface", "name the private interface to listen on, e.g. eth0", sep=": ", bare=True)
    if request.timeout <= 0:
        raise FieldError("timeout", f"{request.timeout:g} must be more than 0 seconds, e.g. 60", sep=": ", bare=True)
    if request.count is not None and request.count < 1:
        raise FieldError(
            "count", f"{request.count} must be at least 1 (or none: stop at the timeout)", sep=": ", bare=True
        )


def collect(
    env: Env,
    request: CollectMacs,
    *,
    on_seen: Callable[[Seen], None] | None = None,
    source: FrameSource | None = None,
) -> CollectResult:
    """Listen for DHCP DISCOVER / REQUEST from unknown MACs; ``on_seen`` hears each one as it arrives (the CLI's
    live table). ``source`` replaces the raw socket (tests)."""
    _check_collect(request)
    return mac_collect.collect(
        env.database,
        env.state_dir,
        request.interface,
        timeout=request.timeout,
        auto=request.auto,
        source=source,
        on_seen=on_seen,
        stop_after=request.count,
    )


def list_sightings(env: Env) -> list[Sighting]:
    """Unassigned MACs seen asking for DHCP, in order of arrival."""
    return netboot_macs.list_sightings(env.database)


def _synced(env: Env, assignments: list[Assignment]) -> Assigned:
    if not assignments:
        return Assigned()
    report = netboot_sync(env.database, env.state_dir, nodes={a.node for a in assignments})
    env.progress(f"DHCP entries of {len(assignments)} node(s) written")
    return Assigned(assignments, report)


def assign(env: Env, request: AssignMac) -> Assigned:
    """Give one node its MAC (and its DHCP entry at once)."""
    return _synced(env, netboot_macs.assign_macs(env.database, [(request.node, request.mac, "mac assign")]))


def assign_all(env: Env, request: AssignAll) -> Assigned:
    """Collected MACs, in order of arrival, to the nodes of the node set without a MAC, in node-set order."""
    return _synced(env, netboot_macs.assign_all(env.database, request.nodeset))


def import_csv(env: Env, request: ImportMacs) -> Assigned:
    """MACs from a CSV file (node,mac); every line is checked first, a bad one changes nothing."""
    return _synced(env, netboot_macs.import_csv(env.database, request.file))


def export_csv(env: Env, request: ExportMacs) -> Exported:
    """Every node's private MAC to a CSV file (node,mac)."""
    return Exported(request.file, netboot_macs.export_csv(env.database, request.file))
