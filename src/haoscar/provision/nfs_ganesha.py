"""NFS-Ganesha's configuration for the active head, rendered from the spec (docs/nfs.md).

One file, ``STATE/nfs/ganesha.conf``, from the spec's ``nfs:`` section and networks: NFSv4 only, bound to the
private alias (never a wildcard address), one TCP listener with limits, FSAL VFS, each export open to the private
subnet only, root squashed unless the spec says otherwise, its Pseudo path equal to its path and a stable Export_Id.
With replicated storage Ganesha runs without a grace period (``Graceless``): the standby's copy is another
filesystem, so no client could reclaim anything there, and a grace period would only refuse every OPEN for
``Grace_Period`` seconds after a failover. With shared storage the recovery records live on that storage
(``nfs.recovery_dir``) and clients get a grace period of two leases to reclaim their opens and locks.

The exports and the private subnet are in the spec, which the HA daemon holds; rendering needs no database, so the
daemon never loads SQLAlchemy for it (as ``ha/services/netboot_render`` exists to avoid).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from haoscar.spec.models import ClusterSpec
from haoscar.spec.nfs_models import NfsExport

NOBODY = 65534  # a squashed user is Debian's nobody/nogroup, not Ganesha's default of -2 (4294967294)
MAX_IO = 1024 * 1024  # per READ/WRITE: bounds what one request may make the server buffer
SQUASH = {"root": "root_squash", "all": "all_squash", "none": "no_root_squash"}
ACCESS = {"rw": "RW", "ro": "RO"}


@dataclass(frozen=True)
class GaneshaPaths:
    """Where the active head's Ganesha keeps its files: all under the state directory (a lab head's is private)."""

    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> GaneshaPaths:
        return cls(Path(state_dir) / "nfs")

    @property
    def conf(self) -> Path:
        return self.root / "ganesha.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "ganesha.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "ganesha.pid"

    @property
    def recovery(self) -> Path:
        return self.root / "recovery"

    @property
    def krb5_cache(self) -> Path:
        return self.root / "krb5"


def find_ganesha() -> str | None:
    return shutil.which("ganesha.nfsd") or shutil.which("ganesha.nfsd", path="/usr/bin:/usr/sbin:/sbin")


def ganesha_argv(binary: str, paths: GaneshaPaths) -> list[str]:
    """Ganesha in the foreground (``-F``: the HA service owns it as a child) with haoscar's files."""
    return [
        binary,
        "-F",
        "-f",
        str(paths.conf),
        "-L",
        str(paths.log_file),
        "-p",
        str(paths.pid_file),
        "-N",
        "NIV_EVENT",
    ]


def recovery_root(spec: ClusterSpec, paths: GaneshaPaths) -> Path:
    return Path(spec.nfs.recovery_dir) if spec.nfs.recovery_dir is not None else paths.recovery


def _core(spec: ClusterSpec, bind: IPv4Address, paths: GaneshaPaths) -> str:
    nfs = spec.nfs
    return f"""NFS_CORE_PARAM {{
    Bind_addr = {bind};
    NFS_Port = {nfs.port};
    NFS_Protocols = 4;
    Enable_UDP = false;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_NFSACL = false;
    RPC_Max_Connections = {nfs.max_connections};
    RPC_Idle_Timeout_S = {nfs.idle_timeout_s};
    MaxRPCRecvBufferSize = {MAX_IO + 64 * 1024};
    MaxRPCSendBufferSize = {MAX_IO + 64 * 1024};
    Enable_TCP_keepalive = true;
    TCP_KEEPIDLE = 30;
    TCP_KEEPINTVL = 10;
    TCP_KEEPCNT = 3;
}}

NFS_KRB5 {{
    Active_krb5 = false;
    CCacheDir = "{paths.krb5_cache}";
}}
"""


def _nfsv4(spec: ClusterSpec, paths: GaneshaPaths) -> str:
    nfs = spec.nfs
    shared = nfs.storage == "shared"
    grace = f"Graceless = false;\n    Grace_Period = {min(180, 2 * nfs.lease_s)};" if shared else "Graceless = true;"
    return f"""NFSV4 {{
    Lease_Lifetime = {nfs.lease_s};
    {grace}
    RecoveryBackend = fs;
    RecoveryRoot = "{recovery_root(spec, paths)}";
    Only_Numeric_Owners = true;
    Allow_Numeric_Owners = true;
    Delegations = false;
    Max_Client_Ids = {nfs.max_connections};
}}

LOG {{
    Default_Log_Level = EVENT;
}}
"""


def _export(export: NfsExport, subnet: str) -> str:
    return f"""EXPORT {{
    Export_Id = {export.effective_id};
    Path = "{export.path}";
    Pseudo = "{export.path}";
    Protocols = 4;
    Transports = TCP;
    SecType = sys;
    Access_Type = None;
    Squash = {SQUASH[export.squash]};
    Anonymous_Uid = {NOBODY};
    Anonymous_Gid = {NOBODY};
    MaxRead = {MAX_IO};
    MaxWrite = {MAX_IO};
    PrefRead = {MAX_IO};
    PrefWrite = {MAX_IO};
    FSAL {{
        Name = VFS;
    }}
    CLIENT {{
        Clients = {subnet};
        Protocols = 4;
        Access_Type = {ACCESS[export.access]};
    }}
}}
"""


def render_config(spec: ClusterSpec, bind: IPv4Address, paths: GaneshaPaths) -> str:
    """The whole ganesha.conf for a head that serves ``spec``'s exports on ``bind`` (the private alias)."""
    subnet = str(spec.networks.private.subnet)
    parts = [
        f"# Written by haoscar from the cluster spec (nfs: section); rewritten at every start of the service.\n\n"
        f"{_core(spec, bind, paths)}",
        _nfsv4(spec, paths),
        # The NFSv4 pseudo root (the tree of Pseudo paths) answers the private subnet only, like the exports.
        f"PSEUDOFS {{\n    Transports = TCP;\n    Protocols = 4;\n    CLIENT {{\n        Clients = {subnet};\n"
        "        Protocols = 4;\n        Access_Type = MDONLY_RO;\n    }\n}\n",
        *(_export(export, subnet) for export in spec.nfs.exports),
    ]
    return "\n".join(parts)


@dataclass(frozen=True)
class NfsMount:
    """What a compute node mounts: ``server``:``path`` on ``path`` (docs/nfs.md says why these options)."""

    server: str
    path: str
    options: str

    def fstab_line(self) -> str:
        return f"{self.server}:{self.path} {self.path} nfs4 {self.options} 0 0"

    def url(self) -> str:
        """The libnfs URL of the same export (``nfs-ls``, ``nfs-cat``, ``nfs-cp``)."""
        return f"nfs://{self.server}{self.path}?version=4"


MOUNT_OPTIONS = "rw,hard,proto=tcp,timeo=50,retrans=3,_netdev"


def client_mounts(spec: ClusterSpec) -> list[NfsMount]:
    """The mounts of a compute node: every export, from the private alias (the NAS with ``storage: external``)."""
    nfs = spec.nfs
    if nfs.storage == "external":
        server = str(nfs.server)
    else:
        alias = spec.heads.primary.private_alias_ip
        server = str(alias if alias is not None else spec.heads.primary.private_ip)
    return [
        NfsMount(
            server, export.path, MOUNT_OPTIONS.replace("rw,", "ro,", 1) if export.access == "ro" else MOUNT_OPTIONS
        )
        for export in nfs.exports
    ]
