"""What the wizard reads to know where the cluster is: the head's tools, the database, the image store, the
netboot files and dnsmasq. Read-only: gathering the facts never changes anything (nor creates the database's
rows; it may create an empty ``haoscar.db``, as ``haoscar node list`` does)."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from haoscar.commands.env import Env
from haoscar.commands.images import image_store
from haoscar.commands.nodes import NodeRow, list_nodes
from haoscar.db.models import MacSighting, Node, Setting
from haoscar.provision import dhcp_server
from haoscar.provision.installer_build import INSTALLER_DIR, KERNEL_NAME
from haoscar.provision.netboot_files import NetbootPaths
from haoscar.spec.nodes import sorted_nodes

__all__ = [
    "PACKAGES_KEY",
    "SERVER_TOOLS",
    "TEST_KEY",
    "ClusterFacts",
    "ServerTool",
    "ToolRow",
    "gather",
    "nodes_without_mac",
    "tool_rows",
]

PACKAGES_KEY = "wizard.packages"  # the packages selected for the client image (Select packages)
TEST_KEY = "wizard.test"  # the last Test Cluster Setup's outcome


@dataclass(frozen=True)
class ServerTool:
    program: str
    package: str  # the Debian package that ships it
    purpose: str
    required: bool = True


# The programs haoscar runs on a head (Makefile APT_PACKAGES has the packages); "optional": only some setups.
SERVER_TOOLS: tuple[ServerTool, ...] = (
    ServerTool("ip", "iproute2", "addresses, the public alias (VIP)"),
    ServerTool("dnsmasq", "dnsmasq-base", "DHCP and TFTP for network boot"),
    ServerTool("rsync", "rsync", "image fetch, node sync, file replication"),
    ServerTool("ssh", "openssh-client", "image fetch, exec, cluster sync"),
    ServerTool("sshd", "openssh-server", "the heads reach each other"),
    ServerTool("debootstrap", "debootstrap", "image build"),
    ServerTool("cpio", "cpio", "the installer's initramfs"),
    ServerTool("openssl", "openssl", "the cluster CA and the heads' certificates"),
    ServerTool("nft", "nftables", "fencing by firewall", required=False),
    ServerTool("ipmitool", "ipmitool", "fencing through a BMC", required=False),
    ServerTool("slurmctld", "slurmctld", "the Slurm controller (HA service)", required=False),
    ServerTool("munged", "munge", "Slurm's authentication", required=False),
    ServerTool("ganesha.nfsd", "nfs-ganesha", "the /home export (HA service)", required=False),
    ServerTool("chronyd", "chrony", "time for the nodes (HA service)", required=False),
    ServerTool("mpirun", "openmpi-bin", "cluster test's MPI check", required=False),
)

_SEARCH = os.pathsep.join(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])


@dataclass(frozen=True)
class ToolRow:
    tool: ServerTool
    path: str | None

    def as_dict(self) -> dict[str, object]:
        t = self.tool
        return {"program": t.program, "package": t.package, "purpose": t.purpose, "required": t.required,
                "path": self.path}  # fmt: skip


def tool_rows() -> list[ToolRow]:
    """Each tool and where it is on this head (None: not installed)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), _SEARCH])
    return [ToolRow(tool, shutil.which(tool.program, path=search)) for tool in SERVER_TOOLS]


@dataclass(frozen=True)
class ClusterFacts:
    missing_tools: list[str] = field(default_factory=list)  # required programs not found
    spec_applied: bool = False  # a primary head is in the database
    images: list[str] = field(default_factory=list)  # images with a current version
    packages_selected: list[str] | None = None
    compute: list[NodeRow] = field(default_factory=list)
    standby: NodeRow | None = None
    without_mac: list[str] = field(default_factory=list)  # compute nodes and the standby without a MAC
    sightings: int = 0  # unknown MACs seen asking for DHCP
    dhcp_running: bool = False
    installer_built: bool = False
    netboot_missing: list[str] = field(default_factory=list)  # nodes with a MAC but no iPXE script
    install_counts: dict[str, int] = field(default_factory=dict)  # compute nodes per install state
    last_test_ok: bool | None = None


def _settings(env: Env) -> tuple[bool, list[str] | None, bool | None, int]:
    with env.database.session(readonly=True) as session:
        primary = session.scalar(select(Node.id).where(Node.role == "primary")) is not None
        packages = session.get(Setting, PACKAGES_KEY)
        test = session.get(Setting, TEST_KEY)
        sightings = len(session.scalars(select(MacSighting.id)).all())
        selected = list(packages.value) if packages is not None else None
        tested = bool(test.value.get("ok")) if test is not None and isinstance(test.value, dict) else None
        return primary, selected, tested, sightings


def nodes_without_mac(env: Env) -> list[str]:
    """Compute nodes and the standby without a MAC, in the order ``mac assign-all`` gives them MACs (ClusterShell's)."""
    rows = list_nodes(env.database)
    return sorted_nodes([r.name for r in rows if r.role in ("compute", "standby") and not r.mac])


def gather(env: Env) -> ClusterFacts:
    """The facts every step's state is derived from."""
    missing = [row.tool.program for row in tool_rows() if row.tool.required and row.path is None]
    applied, selected, tested, sightings = _settings(env)
    images = [image.name for image in image_store(env.state_dir).list() if image.current is not None]
    nodes = list_nodes(env.database)
    compute = [n for n in nodes if n.role == "compute"]
    standby = next((n for n in nodes if n.role == "standby"), None)
    wanting = [*compute, *([standby] if standby else [])]
    paths = NetbootPaths.under(env.state_dir)
    return ClusterFacts(
        missing_tools=missing,
        spec_applied=applied,
        images=images,
        packages_selected=selected,
        compute=compute,
        standby=standby,
        without_mac=[n.name for n in wanting if not n.mac],
        sightings=sightings,
        dhcp_running=dhcp_server.running_pid(paths) is not None,
        installer_built=(paths.boot_dir / INSTALLER_DIR / KERNEL_NAME).is_file(),
        netboot_missing=[n.name for n in wanting if n.mac and not paths.ipxe_file(n.name).is_file()],
        install_counts=dict(Counter(n.install_state for n in compute)),
        last_test_ok=tested,
    )
