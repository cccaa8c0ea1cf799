"""The virtual-cluster lab: hosts as small containers on bridged networks, with fault injection."""

from haoscar.lab.lab import Lab, down_lab, known_labs, require_root
from haoscar.lab.layout import LabHost, LabInterface, LabLayout, layout_from_spec
from haoscar.lab.status import HostStatus, LabStatus, NetworkStatus

__all__ = [
    "HostStatus",
    "Lab",
    "LabHost",
    "LabInterface",
    "LabLayout",
    "LabStatus",
    "NetworkStatus",
    "down_lab",
    "known_labs",
    "layout_from_spec",
    "require_root",
]
