"""What ``lab status`` shows: every host with its role, state and interfaces, every network, every fault."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from haoscar.lab import netlink
from haoscar.lab.layout import LabLayout
from haoscar.lab.names import bridge_name


class LabView(Protocol):
    """What the status needs of a running lab (``haoscar.lab.lab.Lab`` is one): lab.py builds the status, so this
    module must not import lab.py back."""

    layout: LabLayout
    state_dir: Path

    def alive(self, host: str) -> bool: ...

    def host_pids(self, host: str) -> set[int]: ...


@dataclass(frozen=True)
class InterfaceStatus:
    name: str
    network: str
    address: str | None
    mac: str | None
    up: bool | None  # None when the link is gone


@dataclass(frozen=True)
class HostStatus:
    name: str
    role: str
    state: str  # running | frozen | crashed | dead (init gone without `lab crash`)
    init_pid: int | None
    processes: int
    netns: str
    interfaces: list[InterfaceStatus] = field(default_factory=list)


@dataclass(frozen=True)
class NetworkStatus:
    name: str
    subnet: str
    bridge: str
    hosts: list[str]


@dataclass(frozen=True)
class LabStatus:
    name: str
    state_dir: str
    switch_netns: str
    networks: list[NetworkStatus]
    hosts: list[HostStatus]
    partitions: list[dict[str, str | None]]
    losses: dict[str, dict[str, int]]
    taps: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lab_status(lab: LabView) -> LabStatus:
    layout = lab.layout
    hosts = []
    for host in layout.hosts.values():
        try:
            links = netlink.link_states(host.netns)
        except Exception:  # the namespace is gone: report the links as gone, do not fail the status
            links = {}
        state: str = host.state
        if state != "crashed" and not lab.alive(host.name):
            state = "dead"
        ifaces = [InterfaceStatus(i.name, i.network, i.cidr, i.mac, links.get(i.name)) for i in host.interfaces]
        hosts.append(
            HostStatus(host.name, host.role, state, host.init_pid, len(lab.host_pids(host.name)), host.netns, ifaces)
        )
    networks = [
        NetworkStatus(
            name,
            subnet,
            bridge_name(name),
            [h.name for h in layout.hosts.values() if any(i.network == name for i in h.interfaces)],
        )
        for name, subnet in layout.networks.items()
    ]
    return LabStatus(
        name=layout.name,
        state_dir=str(lab.state_dir),
        switch_netns=layout.switch_netns,
        networks=networks,
        hosts=hosts,
        partitions=[{"a": p.a, "b": p.b, "network": p.network} for p in layout.partitions],
        losses=layout.losses,
        taps=layout.taps,
    )
