"""What one head's replication needs from the spec: the peer's address, the trees and their excludes, the ports,
the timings, the key, and where its own state lives under the state directory."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING

from haoscar.errors import UserError
from haoscar.keyring import load_secret

if TYPE_CHECKING:  # every command's database hook imports this module for its constants: no spec models then
    from haoscar.spec.models import ClusterSpec

# The trees replicated when ha.replicate is empty: users' homes, haoscar's config, the image store, the
# scheduler's state (haoscar points Slurm's StateSaveLocation there, so both heads have it) and haoscar's ssh key
# pair and known hosts (one cluster key: the standby must reach the nodes the moment it is the active head).
DEFAULT_TREES = (
    "/home",
    "/etc/haoscar",
    "/var/lib/haoscar/images",
    "/var/lib/haoscar/scheduler",
    "/var/lib/haoscar/ssh",
)
# What a default tree never ships: the control sockets of this head's live ssh masters (provision/fanout_mux.py).
DEFAULT_EXCLUDES = {"/var/lib/haoscar/ssh": ("/mux/",)}
# Never shipped by rsync: SQLite files go through the database channel, and the daemons' own state is per head.
STATE_EXCLUDES = ("/haoscar.db", "/haoscar.db-*", "/haoscar.db.lock", "/replication/", "/ha/", "/labs/")
RSYNC_USER = "haoscar"
DB_SOCKET = "db.sock"  # in state_dir/replication: where local writers hand over transactions


@dataclass(frozen=True)
class Tree:
    """One replicated tree: ``module`` is its rsync daemon module on the peer."""

    path: Path
    excludes: tuple[str, ...]
    module: str
    default: bool = False
    # Exported over NFS: written through file handles too, which inotify may not report (replication/fanwatch.py).
    handles: bool = False


@dataclass(frozen=True)
class ReplConfig:
    node: str
    peer: str
    local_ip: IPv4Address
    peer_ip: IPv4Address
    db_port: int
    rsync_port: int
    trees: tuple[Tree, ...]
    state_dir: Path
    key_file: Path
    batch_s: float
    full_pass_s: float
    lag_alert_s: float
    ack_timeout_s: float
    # Writes to files that never close (mmap, a log held open) are shipped once stable this long.
    open_write_quiet_s: float = 2.0
    extra: dict[str, str] = field(default_factory=dict)
    # The cluster CA and this head's certificate (``tls/`` beside the API token, as the API uses): both channels
    # are mutual TLS with them. None: ``tls/`` beside ``key_file``.
    tls_dir: Path | None = None

    @property
    def repl_dir(self) -> Path:
        return self.state_dir / "replication"

    @property
    def tls(self) -> Path:
        return self.tls_dir if self.tls_dir is not None else self.key_file.parent / "tls"

    def key(self) -> bytes:
        """The replication key (``keys/replication.key`` beside ``ha.key_file``; the shared key of older
        installations while no purpose key exists): never the heartbeat or the lease key."""
        return load_secret(self.key_file, "replication")


def derived_secret(key: bytes, purpose: str) -> bytes:
    """A per-purpose secret from the HA key, so the rsync password never equals the heartbeat key."""
    return hmac.new(key, f"haoscar-replication/{purpose}".encode(), hashlib.sha256).digest()


def rsync_password(key: bytes) -> str:
    return derived_secret(key, "rsync").hex()[:48]


def trees_of(spec: ClusterSpec, state_dir: Path) -> tuple[Tree, ...]:
    entries = [(p.path, tuple(p.exclude), False) for p in spec.ha.replicate] or [
        (path, DEFAULT_EXCLUDES.get(path, ()), True) for path in DEFAULT_TREES
    ]
    # What the heads export over NFS is replicated too (docs/nfs.md): an export no tree holds becomes a tree of its
    # own, created like the default ones (the export makes it haoscar's).
    exported: list[Path] = []
    if spec.nfs.storage == "replicated" and any(service.kind == "nfs-ganesha" for service in spec.ha.services):
        held = [Path(raw) for raw, _, _ in entries]
        entries += [
            (e.path, (), True) for e in spec.nfs.exports if not any(Path(e.path).is_relative_to(h) for h in held)
        ]
        exported = [Path(e.path) for e in spec.nfs.exports]
    trees = []
    for i, (raw, excludes, default) in enumerate(entries):
        path = Path(raw)
        extra: tuple[str, ...] = ()
        # A tree that holds the state directory must not ship the live database or the daemons' private state.
        if path == state_dir or state_dir.is_relative_to(path):
            inner = "" if path == state_dir else "/" + str(state_dir.relative_to(path))
            extra = tuple(inner + e for e in STATE_EXCLUDES)
        # Each head's TLS directory is its own (its key; the CA key on the primary only): never shipped.
        tls = Path(spec.ha.api_token_file).parent / "tls"
        if tls.is_relative_to(path):
            extra += ("/**" if tls == path else f"/{tls.relative_to(path)}/",)
        handles = any(e.is_relative_to(path) or path.is_relative_to(e) for e in exported)
        trees.append(Tree(path=path, excludes=excludes + extra, module=f"t{i}", default=default, handles=handles))
    return tuple(trees)


def repl_config(spec: ClusterSpec, node: str, state_dir: Path, key_file: Path | None = None) -> ReplConfig:
    from haoscar.spec.topology import topology

    topo = topology(spec, node)
    link = topo.replication_link
    ha = spec.ha
    return ReplConfig(
        node=topo.name,
        peer=topo.peer_name,
        local_ip=link.local,
        peer_ip=link.peer,
        db_port=ha.replication_port,
        rsync_port=ha.replication_rsync_port,
        trees=trees_of(spec, Path(state_dir)),
        state_dir=Path(state_dir),
        key_file=key_file or Path(ha.key_file),
        batch_s=ha.replication_batch_s,
        full_pass_s=ha.replication_full_pass_s,
        lag_alert_s=ha.replication_lag_alert_s,
        ack_timeout_s=ha.replication_ack_timeout_s,
        tls_dir=Path(ha.api_token_file).parent / "tls",
    )


def prepare_trees(cfg: ReplConfig) -> None:
    """Check that every tree exists on this head (default trees are created, they are haoscar's own)."""
    missing = []
    for tree in cfg.trees:
        if tree.default:
            tree.path.mkdir(parents=True, exist_ok=True)
        elif not tree.path.is_dir():
            missing.append(str(tree.path))
    if missing:
        raise UserError(
            f"replicated path {', '.join(missing)} does not exist (or is not a directory) on {cfg.node}; "
            "create it or remove it from ha.replicate"
        )
    if os.geteuid() != 0:
        raise UserError("replication needs root: it keeps ownership, ACLs and xattrs of every file")
