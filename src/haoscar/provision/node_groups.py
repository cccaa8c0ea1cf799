"""Node groups from the cluster database, served to ClusterShell as a group source.

The groups (each a list of node names in ClusterShell's order):

- every client group of the database by its name (the spec's ``clients[].name``, else its ``base_name``: a spec
  that names a group ``rack1`` gets ``@rack1``), and ``heads`` (both heads);
- ``compute``: every node whose role is compute, whatever its client group (a client group called ``compute``
  is part of it, so the role's meaning wins);
- ``image-NAME``: the nodes installed from image ``NAME``.

``haoscar exec`` resolves ``@group`` in-process through :class:`DatabaseGroupSource`; the admin's ``clush -g``
reaches the same groups through the ``haoscar groups map|list|all|reverse`` upcalls (docs/exec.md).
"""

from __future__ import annotations

from collections import defaultdict

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet
from ClusterShell.NodeUtils import GroupSource
from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Group, Image, Interface, Node
from haoscar.spec.nodes import node_order, sorted_nodes

SOURCE_NAME = "haoscar"
IMAGE_PREFIX = "image-"


def node_groups(session: Session, *, ordered: bool = True) -> dict[str, list[str]]:
    """Every group name and its nodes (groups sorted by name, empty client groups kept); the names in ClusterShell's
    order unless ``ordered`` is False (a node set expanded through these groups comes out in that order anyway)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for (name,) in session.execute(select(Group.name)):
        groups[name] = []
    query = (
        select(Node.name, Node.role, Group.name, Image.name)
        .outerjoin(Group, Node.group_id == Group.id)
        .outerjoin(Image, Node.image_id == Image.id)
    )
    compute: list[str] = []
    for node, role, group, image in session.execute(query):
        if group is not None and group != "compute":
            groups[group].append(node)
        if role == "compute":
            compute.append(node)
        if image is not None:
            groups[IMAGE_PREFIX + image].append(node)
    groups["compute"] = compute
    # One ClusterShell ordering of every name, then each group sorted by it: ordering each group on its own parsed
    # every name once per group it is in (a tenth of a second of each `haoscar exec` on 200 nodes).
    if not ordered:
        return {name: groups[name] for name in sorted(groups)}
    rank = node_order(name for members in groups.values() for name in members)
    return {name: sorted(groups[name], key=rank.__getitem__) for name in sorted(groups)}


def node_names(session: Session) -> list[str]:
    """Every node of the database in no particular order (membership and folding need none; ordering parses every
    name with ClusterShell)."""
    return list(session.scalars(select(Node.name)))


def all_nodes(session: Session) -> list[str]:
    """Every node of the database, in ClusterShell's order."""
    return sorted_nodes(session.scalars(select(Node.name)))


def private_addresses(session: Session) -> dict[str, str]:
    """Each node's private IP (a node without one is left out)."""
    query = select(Node.name, Interface.ip).join(Interface, Interface.node_id == Node.id)
    return {name: ip for name, ip in session.execute(query.where(Interface.network == "private"))}


class DatabaseGroupSource(GroupSource):  # type: ignore[misc]  # ClusterShell has no type hints
    """A ClusterShell group source holding the database's groups, which notes the unknown group names asked for
    (ClusterShell itself resolves an unknown group to no nodes, which would let a typo run on nothing)."""

    def __init__(self, groups: dict[str, list[str]], everything: list[str]) -> None:
        super().__init__(SOURCE_NAME, groups)
        self.members = groups
        self.all_names = everything
        self.unknown: list[str] = []
        self._folded: dict[str | None, str] = {}

    def resolv_map(self, group: str) -> str:
        if group not in self.members:
            self.unknown.append(group)
            return ""
        return self._fold(group, self.members[group])

    def resolv_all(self) -> str:
        return self._fold(None, self.all_names)

    def _fold(self, key: str | None, names: list[str]) -> str:
        """Folded (node[001-200]): ClusterShell parses a folded set much faster than thousands of names; only the
        groups a node set names are folded, once."""
        if key not in self._folded:
            self._folded[key] = _folded(names)
        return self._folded[key]

    def resolv_reverse(self, node: str) -> str:
        return " ".join(name for name, nodes in self.members.items() if node in nodes)


def _folded(names: list[str]) -> str:
    return str(NodeSet.fromlist(names, resolver=RESOLVER_NOGROUP))
