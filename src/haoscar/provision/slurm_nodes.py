"""The Slurm nodes of the cluster database: compute nodes with their private address and reported hardware.

A node's CPUs and memory are what it reported (at install, or ``slurmd -C`` run through ``slurm sync``), kept as a
setting ``slurm.hardware.NAME`` = ``{"cpus": N, "memory_mb": M}`` (no schema change); until then the safe default
of ``slurm_conf`` is used and the node is listed as not reported.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Interface, Node, Setting
from haoscar.provision.slurm_conf import DEFAULT_CPUS, DEFAULT_MEMORY_MB, SlurmNode

HARDWARE_PREFIX = "slurm.hardware."


def compute_names(session: Session) -> list[str]:
    return list(session.scalars(select(Node.name).where(Node.role == "compute")))


def slurm_nodes(session: Session) -> list[SlurmNode]:
    """Every compute node that has a private address, with its reported hardware or the default."""
    rows = session.execute(
        select(Node.name, Interface.ip)
        .join(Interface, Interface.node_id == Node.id)
        .where(Node.role == "compute", Interface.network == "private")
    ).all()
    hardware = {
        key.removeprefix(HARDWARE_PREFIX): value
        for key, value in session.execute(
            select(Setting.key, Setting.value).where(Setting.key.like("slurm.hardware.%"))
        )
    }
    nodes = []
    for name, ip in rows:
        reported = hardware.get(name)
        if isinstance(reported, dict) and "cpus" in reported and "memory_mb" in reported:
            nodes.append(SlurmNode(name, ip, int(reported["cpus"]), int(reported["memory_mb"]), True))
        else:
            nodes.append(SlurmNode(name, ip, DEFAULT_CPUS, DEFAULT_MEMORY_MB, False))
    return nodes


def record_hardware(session: Session, name: str, cpus: int, memory_mb: int) -> bool:
    """Store what ``name`` reported; True when it changed."""
    value = {"cpus": cpus, "memory_mb": memory_mb}
    row = session.get(Setting, HARDWARE_PREFIX + name)
    if row is None:
        session.add(Setting(key=HARDWARE_PREFIX + name, value=value))
        return True
    if row.value == value:
        return False
    row.value = value
    return True
