"""Expanding a spec into the concrete nodes it describes: the two heads and every compute client.

OSCAR's Define Clients rules: client *i* (0-based) of a group is named ``base_name`` followed by
``start_number + i`` left-padded with zeros to ``padding`` digits (padding 0 = no padding), and gets
``start_ip + i``. A group may instead name its nodes with a ClusterShell node set (``node[01-64]``); the
addresses then follow the node set's sorted order.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException

from haoscar.errors import UserError

if TYPE_CHECKING:  # annotations only: the node order (every `haoscar exec`) needs no pydantic models
    from haoscar.spec.models import ClientGroup, ClusterSpec, HeadNode

Role = Literal["primary", "standby", "compute"]


@dataclass(frozen=True)
class InterfaceDef:
    name: str
    network: str
    ip: ipaddress.IPv4Address
    prefix: int
    mac: str | None = None


@dataclass(frozen=True)
class NodeDef:
    name: str
    role: Role
    domain: str
    image: str | None
    group: str | None
    interfaces: tuple[InterfaceDef, ...] = field(default_factory=tuple)

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.domain}"

    def interface_on(self, network: str) -> InterfaceDef | None:
        return next((i for i in self.interfaces if i.network == network), None)


MAX_GROUP = 65536
"""The most clients one group may hold (a /16 of addresses); a typo like node[1-1000000] stops here."""


def oscar_names(base_name: str, count: int, start_number: int = 1, padding: int = 0) -> list[str]:
    """OSCAR's client names: base name + number, zero-padded to ``padding`` digits (0 = no padding); a number
    wider than ``padding`` keeps all its digits, as OSCAR does (padding 2: node99, node100)."""
    return [f"{base_name}{str(start_number + i).zfill(padding)}" for i in range(count)]


def expand_nodeset(pattern: str) -> list[str]:
    """The names of a ClusterShell node set such as ``node[01-64]`` or ``rack[1-2]-n[01-16]``, in ClusterShell's
    sorted order (``node[1-3,7]`` gives node1, node2, node3, node7)."""
    if "@" in pattern:
        # Group names resolve through the machine's ClusterShell configuration, so the spec would mean
        # different nodes on different machines.
        raise UserError(f"{pattern!r} names a node group; a spec names its nodes itself, e.g. node[01-64]")
    try:
        nodeset = NodeSet(pattern)
        size = len(nodeset)
        if size > MAX_GROUP:
            raise UserError(f"node set {pattern!r} has {size} nodes; a group holds at most {MAX_GROUP}, split it")
        names = list(nodeset)
    except NodeSetException as exc:
        raise UserError(f"{pattern!r} is not a node set ({exc}); write e.g. node[01-64]") from None
    if not names:
        raise UserError(f"node set {pattern!r} is empty; write e.g. node[01-64]")
    return names


# Characters that make ClusterShell read a string as a set expression (node[1-3], a,b, a!b ...), not one name.
_NOT_ONE_NAME = re.compile(r"[\s,\[\]!&^@%:]")


def node_order(names: Iterable[str]) -> dict[str, int]:
    """Each distinct name's rank in ClusterShell's order: by pattern, then by index, so node2 comes before node10
    and rack1-n2 before rack1-n10 (the order ``node list`` and ``nodeset -e`` show). Names ClusterShell cannot
    take as one node (empty, or holding ``[``, ``,`` ...) follow, in plain string order."""
    distinct = dict.fromkeys(names)
    plain = [name for name in distinct if name and not _NOT_ONE_NAME.search(name)]
    try:
        # Only names given come back: ClusterShell may spell one differently, which then sorts with the rest.
        ordered = [name for name in NodeSet.fromlist(plain, resolver=RESOLVER_NOGROUP) if name in distinct]
    except NodeSetException:
        ordered = []
    seen = set(ordered)
    ordered += sorted(name for name in distinct if name not in seen)
    return {name: rank for rank, name in enumerate(ordered)}


def sorted_nodes(names: Iterable[str]) -> list[str]:
    """``names`` in ClusterShell's order (see :func:`node_order`); a name given twice is listed twice."""
    counts = Counter(names)
    rank = node_order(counts)
    return [name for name in sorted(counts, key=rank.__getitem__) for _ in range(counts[name])]


def group_names(group: ClientGroup) -> list[str]:
    if group.nodeset is not None:
        return expand_nodeset(group.nodeset)
    assert group.base_name is not None and group.count is not None  # guaranteed by the model
    return oscar_names(group.base_name, group.count, group.start_number, group.padding)


def group_label(group: ClientGroup, index: int) -> str:
    return group.name or group.base_name or f"clients{index}"


def _prefix(netmask: ipaddress.IPv4Address) -> int:
    return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen


def head_node(spec: ClusterSpec, role: Literal["primary", "standby"]) -> NodeDef:
    head: HeadNode = getattr(spec.heads, role)
    nets = spec.networks
    interfaces = [
        InterfaceDef(
            head.private_interface,
            "private",
            head.private_ip,
            nets.private.subnet.prefixlen,
            head.private_mac,
        ),
        InterfaceDef(head.public_interface, "public", head.public_ip, nets.public.subnet.prefixlen),
    ]
    if nets.heartbeat is not None and head.heartbeat_ip is not None:
        interfaces.append(
            InterfaceDef(head.heartbeat_interface, "heartbeat", head.heartbeat_ip, nets.heartbeat.subnet.prefixlen)
        )
    return NodeDef(
        name=head.hostname,
        role=role,
        domain=spec.cluster.domain,
        image=head.image,
        group="heads",
        interfaces=tuple(interfaces),
    )


def client_nodes(spec: ClusterSpec, group: ClientGroup, index: int) -> Iterator[NodeDef]:
    label = group_label(group, index)
    prefix = _prefix(group.netmask)
    for offset, name in enumerate(group_names(group)):
        ip = group.start_ip + offset
        iface = InterfaceDef(group.interface, "private", ip, prefix, group.macs.get(name))
        yield NodeDef(
            name=name,
            role="compute",
            domain=group.domain or spec.cluster.domain,
            image=group.image,
            group=label,
            interfaces=(iface,),
        )


def all_nodes(spec: ClusterSpec) -> list[NodeDef]:
    """Both heads first, then every client in spec order."""
    nodes = [head_node(spec, "primary"), head_node(spec, "standby")]
    for index, group in enumerate(spec.clients):
        nodes.extend(client_nodes(spec, group, index))
    return nodes
