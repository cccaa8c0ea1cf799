"""What a lab is made of: its networks and hosts, derived from a cluster spec and saved as JSON.

The layout is pure data. ``Lab`` builds it once from the spec and keeps it in ``state_dir/labs/NAME/lab.json`` so
that ``Lab.open`` and every CLI command (a new process each time) see the same lab.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from haoscar.errors import UserError
from haoscar.fsutil import atomic_write
from haoscar.lab.names import bridge_name, host_netns, switch_netns, switch_port
from haoscar.spec import ClusterSpec, all_nodes

Role = Literal["primary", "standby", "compute", "witness", "client", "bmc", "extra"]
HostState = Literal["starting", "running", "crashed", "frozen"]
LAYOUT_VERSION = 1


@dataclass
class LabInterface:
    name: str
    network: str
    ip: str | None = None
    prefix: int | None = None
    mac: str | None = None
    port: str = ""  # the switch-side end of the veth

    @property
    def cidr(self) -> str | None:
        return None if self.ip is None else f"{self.ip}/{self.prefix}"


@dataclass
class LabHost:
    name: str
    role: Role
    index: int
    netns: str
    interfaces: list[LabInterface] = field(default_factory=list)
    state: HostState = "starting"
    init_pid: int | None = None  # PID 1 of the host's PID namespace, as seen from the root namespace
    pidns: int | None = None  # inode of that PID namespace: guards against a recycled pid
    starter_pid: int | None = None  # the `unshare` outside the namespace that waits for the init
    links_down_by_freeze: bool = False
    powers: str | None = None  # a BMC host: the lab host whose power it controls (``lab.bmcs``, lab/bmc.py)

    def interface(self, name: str) -> LabInterface:
        for iface in self.interfaces:
            if iface.name == name:
                return iface
        known = ", ".join(i.name for i in self.interfaces) or "none"
        raise UserError(f"host {self.name} has no interface {name!r}; its interfaces are: {known}")

    def address_on(self, network: str) -> str | None:
        return next((i.ip for i in self.interfaces if i.network == network and i.ip), None)


@dataclass
class Partition:
    a: str
    b: str
    network: str | None = None


@dataclass
class LabLayout:
    name: str
    switch_netns: str
    networks: dict[str, str]  # network name -> subnet
    hosts: dict[str, LabHost]
    partitions: list[Partition] = field(default_factory=list)
    losses: dict[str, dict[str, int]] = field(default_factory=dict)  # host -> iface -> percent
    taps: dict[str, str] = field(default_factory=dict)  # tap name -> network
    version: int = LAYOUT_VERSION

    def bridge(self, network: str) -> str:
        if network not in self.networks:
            known = ", ".join(self.networks)
            raise UserError(f"lab {self.name} has no network {network!r}; its networks are: {known}")
        return bridge_name(network)

    def host(self, name: str) -> LabHost:
        host = self.hosts.get(name)
        if host is None:
            known = ", ".join(self.hosts)
            raise UserError(f"lab {self.name} has no host {name!r}; its hosts are: {known}")
        return host

    def new_host(self, name: str, role: Role, interfaces: list[LabInterface]) -> LabHost:
        if name in self.hosts:
            raise UserError(f"lab {self.name} already has a host {name!r}; choose another name")
        index = max((h.index for h in self.hosts.values()), default=-1) + 1
        for position, iface in enumerate(interfaces):
            self.bridge(iface.network)
            iface.port = switch_port(index, position)
        host = LabHost(name, role, index, host_netns(self.name, name), interfaces)
        self.hosts[name] = host
        return host

    # --- persistence -------------------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> LabLayout:
        raw: dict[str, Any] = json.loads(text)
        hosts = {
            name: LabHost(**{**h, "interfaces": [LabInterface(**i) for i in h["interfaces"]]})
            for name, h in raw["hosts"].items()
        }
        return cls(
            name=raw["name"],
            switch_netns=raw["switch_netns"],
            networks=raw["networks"],
            hosts=hosts,
            partitions=[Partition(**p) for p in raw.get("partitions", [])],
            losses=raw.get("losses", {}),
            taps=raw.get("taps", {}),
            version=raw.get("version", LAYOUT_VERSION),
        )

    def save(self, path: Path) -> None:
        atomic_write(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> LabLayout:
        return cls.from_json(path.read_text())


def _iface(name: str, network: str, ip: ipaddress.IPv4Address, prefix: int, mac: str | None = None) -> LabInterface:
    return LabInterface(name=name, network=network, ip=str(ip), prefix=prefix, mac=mac)


def layout_from_spec(spec: ClusterSpec, name: str) -> LabLayout:
    """Every host of the spec's lab: both heads, every compute client, the witness and the public-side user."""
    nets = spec.networks
    subnets = {"private": nets.private.subnet, "public": nets.public.subnet}
    if nets.heartbeat is not None:
        subnets["heartbeat"] = nets.heartbeat.subnet
    layout = LabLayout(name, switch_netns(name), {k: str(v) for k, v in subnets.items()}, {})
    for node in all_nodes(spec):
        ifaces = [_iface(i.name, i.network, i.ip, i.prefix, i.mac) for i in node.interfaces]
        layout.new_host(node.name, node.role, ifaces)
    witness = spec.ha.witness
    if witness is not None:
        ifaces = []
        for address in witness.addresses:
            network = next((n for n, s in subnets.items() if address in s), None)
            if network is None:
                raise UserError(
                    f"witness address {address} is in none of the spec's networks "
                    f"({', '.join(f'{n} {s}' for n, s in subnets.items())}); pick one inside one of them"
                )
            ifaces.append(_iface(f"eth{len(ifaces)}", network, address, subnets[network].prefixlen))
        layout.new_host(witness.hostname, "witness", ifaces)
    client = spec.lab.client
    if client is not None:
        if client.ip not in subnets["public"]:
            raise UserError(f"lab.client.ip {client.ip} is outside the public network {subnets['public']}")
        layout.new_host(client.hostname, "client", [_iface("eth0", "public", client.ip, subnets["public"].prefixlen)])
    for head, address in spec.lab.bmcs.items():
        # A separate device with its own address on the management (private) network, like a real BMC.
        network = next((n for n, s in subnets.items() if address in s), None)
        if network is None or head not in (spec.heads.primary.hostname, spec.heads.standby.hostname):
            raise UserError(f"lab.bmcs.{head}: {address} must be the BMC of a head, on one of the spec's networks")
        bmc = layout.new_host(f"{head}-bmc", "bmc", [_iface("eth0", network, address, subnets[network].prefixlen)])
        bmc.powers = head
    return layout
