"""The cluster spec: models, loading with FILE:LINE problems, and expansion into nodes."""

from haoscar.spec.loader import Problem, SpecError, check_text, load_spec
from haoscar.spec.models import ClusterSpec
from haoscar.spec.nodes import InterfaceDef, NodeDef, all_nodes

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
