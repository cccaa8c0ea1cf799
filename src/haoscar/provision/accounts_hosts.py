"""The cluster's hosts as every host's /etc/hosts names them (``cluster sync`` writes them, ``cluster test`` checks
them): both heads, every node with its private IP, FQDN and short name, and the private alias as ``CLUSTER-head``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Node, Setting
from haoscar.provision.accounts_script import HostEntry
from haoscar.provision.node_groups import private_addresses
from haoscar.spec.nodes import node_order

HEAD_ROLES = ("primary", "standby")
ALIAS_SUFFIX = "-head"  # the private alias's name: the cluster's name + this


def _setting(session: Session, key: str) -> Any:
    row = session.get(Setting, key)
    return None if row is None else row.value


def host_entries(session: Session) -> list[HostEntry]:
    """Every head and node with a private IP (heads first, then ClusterShell's order), then the private alias
    (``compute_address``, which follows the active head) as ``CLUSTER-head``, unless it is a head's own address."""
    addresses = private_addresses(session)
    roles: dict[str, str] = {}
    domains: dict[str, str] = {}
    for name, role, domain in session.execute(select(Node.name, Node.role, Node.domain)):
        roles[name], domains[name] = role, domain
    rank = node_order(addresses)
    names = sorted(addresses, key=lambda n: (roles[n] not in HEAD_ROLES, rank[n]))
    entries = [HostEntry(addresses[n], f"{n}.{domains[n]}", n) for n in names]
    alias, cluster = _setting(session, "compute_address"), _setting(session, "cluster_name")
    domain = _setting(session, "domain") or "cluster.local"
    name = f"{cluster}{ALIAS_SUFFIX}"
    if alias and cluster and alias not in addresses.values() and name not in roles:
        entries.append(HostEntry(str(alias), f"{name}.{domain}", name))
    return entries
