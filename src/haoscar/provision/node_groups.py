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

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Group, Image, Interface, Node
from haoscar.db.peek import GroupMember
from haoscar.provision.group_source import IMAGE_PREFIX, SOURCE_NAME, DatabaseGroupSource, groups_from_rows
from haoscar.spec.nodes import sorted_nodes

__all__ = [
    "IMAGE_PREFIX",
    "SOURCE_NAME",
    "DatabaseGroupSource",
    "all_nodes",
    "node_groups",
    "node_names",
    "private_addresses",
]


def node_groups(session: Session, *, ordered: bool = True) -> dict[str, list[str]]:
    """Every group name and its nodes (groups sorted by name, empty client groups kept); the names in ClusterShell's
    order unless ``ordered`` is False (``group_source.groups_from_rows``)."""
    names = [str(name) for (name,) in session.execute(select(Group.name))]
    query = (
        select(Node.name, Node.role, Group.name, Image.name)
        .outerjoin(Group, Node.group_id == Group.id)
        .outerjoin(Image, Node.image_id == Image.id)
    )
    rows = [GroupMember(node, role, group, image) for node, role, group, image in session.execute(query)]
    return groups_from_rows(names, rows, ordered=ordered)


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
