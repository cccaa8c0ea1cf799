"""The nodes as one table for the web console: state, image and its version, install stage; filterable.

The filter is what ``haoscar node list NODESET`` takes (a ClusterShell node set, same parsing, same messages) and
also an ``@group`` of the database's node groups, as ``haoscar exec`` resolves them (same messages). Every
problem is a ``FieldError`` on ``nodeset``, so the console shows it next to its field, worded as the CLI words it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from haoscar.commands.env import Env
from haoscar.commands.install import InstallRow, MonitorInstalls, snapshot
from haoscar.commands.nodes import ListNodes, NodeList, node_list
from haoscar.errors import FieldError, UserError

__all__ = ["NodeTable", "NodeTableRequest", "NodeTableRow", "node_table"]


@dataclass(frozen=True)
class NodeTableRequest:
    nodeset: str = ""
    """A node set such as node[01-16], or a group such as @compute; empty: every node."""


@dataclass(frozen=True)
class NodeTableRow:
    name: str
    role: str
    group: str | None
    ip: str | None
    mac: str | None
    image: str | None
    image_version: int | None
    install_state: str
    stage: str | None = None
    """The installer's current (or last) stage while it reports, e.g. image."""
    percent: int | None = None
    detail: str = ""
    """Why an install failed (stage and reason), as ``node list`` shows it."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NodeTable:
    nodeset: str
    """The filter as given (empty: every node)."""
    rows: list[NodeTableRow] = field(default_factory=list)

    @property
    def by_state(self) -> dict[str, int]:
        """How many nodes are in each install state."""
        return dict(sorted(Counter(row.install_state for row in self.rows).items()))

    @property
    def by_stage(self) -> dict[str, int]:
        """How many installing nodes are in each installer stage."""
        stages = Counter(row.stage for row in self.rows if row.stage and row.install_state == "installing")
        return dict(sorted(stages.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodeset": self.nodeset,
            "nodes": [row.as_dict() for row in self.rows],
            "by_state": self.by_state,
            "by_stage": self.by_stage,
        }


def _group_names(env: Env, pattern: str) -> str:
    """The node set a pattern with ``@group`` means, expanded against the database's groups with ``haoscar
    exec``'s rules and messages, folded again for ``node list`` (which checks that every name is known); empty
    for a group without nodes."""
    from haoscar.commands.exec import expand_nodes
    from haoscar.db.folding import fold
    from haoscar.provision.node_groups import DatabaseGroupSource, all_nodes, node_groups

    with env.database.session(readonly=True) as session:
        source = DatabaseGroupSource(node_groups(session), all_nodes(session))
    names = expand_nodes(pattern, source)
    return fold(names) if names else ""


def _listing(env: Env, nodeset: str) -> NodeList:
    try:
        if "@" in nodeset:
            nodeset = _group_names(env, nodeset)
            if not nodeset:  # a known group without nodes (yet): nothing to show, not a mistake
                return NodeList([], {})
        return node_list(env, ListNodes(nodeset or None))
    except FieldError as exc:
        raise FieldError("nodeset", exc.problems[0].detail, sep=exc.problems[0].sep) from None
    except UserError as exc:
        # node list's own messages name no field (its NODESET is a positional argument): the whole line
        raise FieldError("nodeset", str(exc), sep=None) from None


def node_table(env: Env, request: NodeTableRequest) -> NodeTable:
    """Every node, or those the filter names, heads first, with the installer's live stage where there is one."""
    nodeset = request.nodeset.strip()
    listing = _listing(env, nodeset)
    names = {row.name for row in listing.rows}
    live: dict[str, InstallRow] = {row.node: row for row in snapshot(env, MonitorInstalls()).rows if row.node in names}
    rows = []
    for row in listing.rows:
        install = live.get(row.name)
        rows.append(
            NodeTableRow(
                name=row.name,
                role=row.role,
                group=row.group,
                ip=row.ip,
                mac=row.mac,
                image=row.image,
                image_version=row.image_version,
                install_state=install.install_state if install is not None else row.install_state,
                stage=install.stage if install is not None else None,
                percent=install.percent if install is not None else None,
                detail=listing.install_detail.get(row.name, ""),
            )
        )
    return NodeTable(nodeset, rows)
