"""The cluster spec: models, loading with FILE:LINE problems, and expansion into nodes.

The names are loaded on first use: importing one submodule (``haoscar.spec.nodes`` for the node order, on every
``haoscar exec``) must not load the loader, the checks and the pydantic models with it (start-up time)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    try:  # a submodule, as ``haoscar.spec.X`` was reachable when this package imported its modules eagerly
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":  # the submodule exists and lacks something itself
            raise
        raise AttributeError(f"module 'haoscar.spec' has no attribute {name!r}") from None
