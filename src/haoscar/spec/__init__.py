"""The cluster spec: models, loading with FILE:LINE problems, and expansion into nodes.

The names are loaded on first use: importing one submodule (``haoscar.spec.nodes`` for the node order, on every
``haoscar exec``) must not load the loader, the checks and the pydantic models with it (start-up time)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from haoscar.lazynames import lazy_names

if TYPE_CHECKING:
    from haoscar.spec.loader import Problem, SpecError, check_text, load_spec
    from haoscar.spec.models import ClusterSpec
    from haoscar.spec.nodes import InterfaceDef, NodeDef, all_nodes

_HOME = {
    "ClusterSpec": "haoscar.spec.models",
    "InterfaceDef": "haoscar.spec.nodes",
    "NodeDef": "haoscar.spec.nodes",
    "Problem": "haoscar.spec.loader",
    "SpecError": "haoscar.spec.loader",
    "all_nodes": "haoscar.spec.nodes",
    "check_text": "haoscar.spec.loader",
    "load_spec": "haoscar.spec.loader",
}

__all__ = [
    "ClusterSpec",
    "InterfaceDef",
    "NodeDef",
    "Problem",
    "SpecError",
    "all_nodes",
    "check_text",
    "load_spec",
]


__getattr__ = lazy_names(__name__, _HOME)
