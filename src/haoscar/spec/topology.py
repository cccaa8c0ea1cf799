"""Which head am I, who is my peer, which networks do we share: resolved once from the spec and a node name.

The HA daemon (``ha/config.py``) and replication (``replication/config.py``) both start from this model, so the
two can never disagree on the peer or on the link replication traffic takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Literal

from haoscar.errors import UserError
from haoscar.spec.models import ClusterSpec, HeadNode

Role = Literal["primary", "standby"]


@dataclass(frozen=True)
class Link:
    """One network both heads are on: heartbeats go from ``local`` to ``peer`` on it."""

    network: str
    local: IPv4Address
    peer: IPv4Address


@dataclass(frozen=True)
class Topology:
    """One head's place in the pair: itself, its peer, and the links they share (private first)."""

    role: Role
    me: HeadNode
    peer: HeadNode
    links: tuple[Link, ...]

    @property
    def name(self) -> str:
        return self.me.hostname

    @property
    def peer_name(self) -> str:
        return self.peer.hostname

    @property
    def is_primary(self) -> bool:
        return self.role == "primary"

    def link(self, network: str) -> Link | None:
        return next((link for link in self.links if link.network == network), None)

    @property
    def replication_link(self) -> Link:
        """The dedicated heartbeat link when both heads have one (replication traffic stays off the compute
        network), else the private network."""
        return self.link("heartbeat") or self.links[0]


def role_of(spec: ClusterSpec, node: str) -> Role:
    """``node`` is a head's host name, or ``primary`` / ``standby``."""
    primary, standby = spec.heads.primary, spec.heads.standby
    if node in ("primary", primary.hostname):
        return "primary"
    if node in ("standby", standby.hostname):
        return "standby"
    raise UserError(
        f"{node!r} is not a head of this cluster; use {primary.hostname} (primary) or {standby.hostname} (standby)"
    )


def _links(me: HeadNode, peer: HeadNode, has_heartbeat_net: bool) -> tuple[Link, ...]:
    links = [Link("private", me.private_ip, peer.private_ip), Link("public", me.public_ip, peer.public_ip)]
    if has_heartbeat_net and me.heartbeat_ip is not None and peer.heartbeat_ip is not None:
        links.append(Link("heartbeat", me.heartbeat_ip, peer.heartbeat_ip))
    return tuple(links)


def topology(spec: ClusterSpec, node: str) -> Topology:
    """The topology as head ``node`` sees it (a UserError naming both heads when it is neither)."""
    role = role_of(spec, node)
    primary, standby = spec.heads.primary, spec.heads.standby
    me, peer = (primary, standby) if role == "primary" else (standby, primary)
    return Topology(role=role, me=me, peer=peer, links=_links(me, peer, spec.networks.heartbeat is not None))


def compute_facing_address(spec: ClusterSpec) -> IPv4Address:
    """The address compute nodes use for every head service (DHCP next-server, iPXE and boot-server URLs, the
    installer's head, the scheduler): the private alias IP, which follows the active head, when the spec has one;
    else the primary's own private IP (compute-side services then do not follow a failover)."""
    primary = spec.heads.primary
    return primary.private_alias_ip or primary.private_ip


def spec_warnings(spec: ClusterSpec) -> list[str]:
    """What a valid spec does not give: said by ``spec validate``, never an error."""
    warnings: list[str] = []
    if spec.heads.primary.private_alias_ip is None:
        warnings.append(
            "heads.*.private_alias_ip is not set: compute nodes reach the head at the primary's private IP "
            f"{spec.heads.primary.private_ip}, so DHCP, network boot, installs and the scheduler will not follow a "
            "failover; add the same free private address to both heads"
        )
    return warnings
