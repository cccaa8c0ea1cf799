"""Slurm for the cluster: ``slurm.conf`` rendered from the cluster database, the controller address, the munge key.

Design (docs/slurm.md):

- **One controller entry, any head**: ``SlurmctldHost=localhost(ADDR)``. slurmctld accepts to run on a host whose
  name matches a ``SlurmctldHost`` entry, and ``localhost`` matches every host, so either head may run it as the
  *primary* with the same file. Clients and slurmd reach it at ``ADDR``, the controller address
  (``controller_address``): the private alias that moves with the active head. Slurm's own backup controller is
  not used: it waits ``SlurmctldTimeout`` (120 s) before taking over, and with both entries on one alias address its
  takeover asks "the primary" (itself) to shut down. haoscar's role machine starts slurmctld on the active head
  only (the ``slurmctld`` service kind), so there is never a second controller to arbitrate.
- **State on a replicated tree**: ``StateSaveLocation`` is under ``/var/lib/haoscar/scheduler``, a default
  replicated tree, so the new active head starts from the old one's job queue (as old as the replication lag).
- **Private paths**: the config, the key and every state, log and pid file are under haoscar's directories
  (``/etc/haoscar``, ``/var/lib/haoscar``, ``/run``), never ``/etc/slurm`` or ``/etc/munge``: a lab host has its own
  copy of each, and a real head keeps them in its replicated ``/etc/haoscar``.

Everything here but the file writers is a pure function of its arguments (golden-file tests).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from haoscar.fsutil import atomic_write
from haoscar.spec.models import ClusterSpec, HeadNode
from haoscar.spec.topology import compute_facing_address

CONF_PATH = "/etc/haoscar/slurm/slurm.conf"
MUNGE_KEY_PATH = "/etc/haoscar/slurm/munge.key"
MUNGE_SOCKET = "/run/munge/munge.socket.2"
STATE_SAVE = "/var/lib/haoscar/scheduler/slurmctld"
SLURMCTLD_PORT = 6817
SLURMD_PORT = 6818
MUNGE_KEY_BYTES = 1024
DEFAULT_PARTITION = "compute"
# slurmctld drops to this account once started; Debian's slurm-wlm-basic-plugins creates it on every head and node
# with the same fixed uid (64030), so the state replicated with numeric ids is the controller's on both heads.
SLURM_USER = "slurm"
# Until a node has reported its hardware (at install, or `slurmd -C` through `slurm sync`), it is declared with one
# CPU and 1 MiB: Slurm drains a node that registers with LESS than its configured resources, never with more, so a
# small default never takes a node out of service; it only under-uses it until the report arrives.
DEFAULT_CPUS = 1
DEFAULT_MEMORY_MB = 1


@dataclass(frozen=True)
class SlurmNode:
    name: str
    address: str
    cpus: int = DEFAULT_CPUS
    memory_mb: int = DEFAULT_MEMORY_MB
    reported: bool = False
    """False: the safe default is used because the node has not reported its CPUs and memory yet."""


@dataclass(frozen=True)
class SlurmPaths:
    """Where Slurm keeps its state: the same strings on every host (each host has its own directories)."""

    state_save: str = STATE_SAVE
    slurmd_spool: str = "/var/lib/haoscar/slurm/slurmd"
    log_dir: str = "/var/lib/haoscar/slurm/log"
    run_dir: str = "/run/haoscar-slurm"
    munge_socket: str = MUNGE_SOCKET


def host_dirs(paths: SlurmPaths | None = None) -> list[str]:
    """The directories every head and node needs before slurmctld or slurmd starts (they do not create them)."""
    p = paths or SlurmPaths()
    return [p.state_save, p.slurmd_spool, p.log_dir, p.run_dir]


def private_alias(spec: ClusterSpec) -> str | None:
    """``heads.*.private_alias_ip`` when the spec has it (issue 11, item 1), else None."""
    value = spec.heads.primary.private_alias_ip
    return str(value) if value is not None else None


def controller_address(spec: ClusterSpec, active: str | None = None) -> str:
    """Where slurmd and clients reach slurmctld: the private alias when the spec has one (it follows the active
    head); otherwise the active head's own private address (``active`` names it; the primary by default), which
    does not follow a failover: ``slurm sync`` must then be run again on the new active head."""
    if active is None or private_alias(spec) is not None:
        return str(compute_facing_address(spec))  # the one definition of "where compute nodes reach the head"
    return str(head_named(spec, active).private_ip)


def head_named(spec: ClusterSpec, name: str | None) -> HeadNode:
    heads = (spec.heads.primary, spec.heads.standby)
    return next((head for head in heads if head.hostname == name), spec.heads.primary)


def node_line(node: SlurmNode) -> str:
    return f"NodeName={node.name} NodeAddr={node.address} CPUs={node.cpus} RealMemory={node.memory_mb} State=UNKNOWN"


def render_slurm_conf(
    cluster_name: str,
    controller: str,
    nodes: Sequence[SlurmNode],
    *,
    partition: str = DEFAULT_PARTITION,
    paths: SlurmPaths | None = None,
    slurm_user: str = SLURM_USER,
) -> str:
    """``slurm.conf`` for the whole cluster (heads and nodes get the same bytes, so Slurm's config hash agrees)."""
    p = paths or SlurmPaths()
    lines = [
        "# written by haoscar (slurm sync) from the cluster database; do not edit: run `haoscar slurm sync`",
        f"ClusterName={cluster_name}",
        # Any head may run the one controller (see the module docstring); ADDR follows the active head.
        f"SlurmctldHost=localhost({controller})",
        f"SlurmctldPort={SLURMCTLD_PORT}",
        f"SlurmdPort={SLURMD_PORT}",
        "AuthType=auth/munge",
        f"AuthInfo=socket={p.munge_socket}",
        "CryptoType=crypto/munge",
        # The controller runs unprivileged (its state directory is the slurm account's); slurmd stays root: it
        # starts every job as its user.
        f"SlurmUser={slurm_user}",
        "SlurmdUser=root",
        f"StateSaveLocation={p.state_save}",
        f"SlurmdSpoolDir={p.slurmd_spool}",
        f"SlurmctldPidFile={p.run_dir}/slurmctld.pid",
        f"SlurmdPidFile={p.run_dir}/slurmd.pid",
        f"SlurmctldLogFile={p.log_dir}/slurmctld.log",
        f"SlurmdLogFile={p.log_dir}/slurmd.log",
        # No cgroup plugins: they need a writable cgroup tree of the host's own, which lab hosts share.
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MpiDefault=none",
        "ReturnToService=2",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "SchedulerType=sched/backfill",
        # Nodes installed from an image fetch this file from the controller (slurmd --conf-server ADDR), so a new
        # node joins without a push (docs/install.md "Joining the cluster"); pushed copies stay valid.
        "SlurmctldParameters=enable_configless",
    ]
    ordered = sorted(nodes, key=lambda node: _natural(node.name))
    lines.extend(node_line(node) for node in ordered)
    if ordered:
        names = ",".join(node.name for node in ordered)
        lines.append(f"PartitionName={partition} Nodes={names} Default=YES MaxTime=INFINITE State=UP")
    return "\n".join(lines) + "\n"


def _natural(name: str) -> list[object]:
    """node2 before node10, as ClusterShell orders them (the spec layer's order, without importing it here)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


_C_FIELD = re.compile(r"\b(CPUs|RealMemory)=(\d+)")


def parse_slurmd_c(text: str) -> tuple[int, int] | None:
    """CPUs and RealMemory (MiB) from ``slurmd -C``'s first line, or None when they are not there."""
    found = dict(_C_FIELD.findall(text))
    if "CPUs" not in found or "RealMemory" not in found:
        return None
    return int(found["CPUs"]), int(found["RealMemory"])


def configured_node_names(conf: str) -> list[str]:
    """The ``NodeName=`` entries of a slurm.conf (what a controller running that file knows)."""
    names: list[str] = []
    for line in conf.splitlines():
        match = re.match(r"\s*NodeName=(\S+)", line)
        if match and match.group(1) != "DEFAULT":
            names.append(match.group(1))
    return names


def unknown_nodes(slurm_names: Iterable[str], db_names: Iterable[str]) -> list[str]:
    known = set(db_names)
    return sorted({name for name in slurm_names if name not in known}, key=_natural)


def new_munge_key() -> bytes:
    return secrets.token_bytes(MUNGE_KEY_BYTES)


def munge_owner() -> tuple[int, int] | None:
    """munge's uid and gid (the Debian package creates the account), or None where it does not exist."""
    try:
        entry = pwd.getpwnam("munge")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def ensure_munge_key(path: Path) -> tuple[bytes, bool]:
    """The cluster's munge key at ``path``, generated once (1024 random bytes, mode 0400, owned by munge): an
    existing key of the right size is kept. Returns the key and whether it was created now."""
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        existing = b""
    if len(existing) >= 32:  # munged's own minimum; a shorter file is not a key
        return existing, False
    key = new_munge_key()
    atomic_write(path, key, mode=0o400)
    owner = munge_owner()
    if owner is not None:
        os.chown(path, *owner)
    return key, True


def write_slurm_conf(path: Path, text: str) -> bool:
    """Write ``slurm.conf`` atomically; False when it already had these bytes."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    atomic_write(path, text, mode=0o644)
    return True
