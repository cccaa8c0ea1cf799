"""Node names in messages: folded as a ClusterShell node set, or the first few and a count. No SQLAlchemy here, so
that commands whose start-up counts (``haoscar exec``) can say what they did without loading it."""

from __future__ import annotations

from collections.abc import Iterable

from ClusterShell.NodeSet import NodeSet

# How many offending names or addresses an error message lists before it says "and N more".
SHOWN = 5


def fold(names: Iterable[str]) -> str:
    """Names as a folded ClusterShell node set, e.g. node[001-128]."""
    return str(NodeSet.fromlist(list(names)))


def some(items: Iterable[str]) -> str:
    items = list(items)
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} and {len(items) - SHOWN} more"
