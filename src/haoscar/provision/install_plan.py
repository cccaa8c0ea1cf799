"""What the installer needs to know about the node it is installing, as shell assignments it can source.

The installer is POSIX sh on busybox, which has no JSON parser: the boot server answers ``GET /install/MAC/plan``
with ``KEY='value'`` lines (quoted with ``shlex.quote``). A missing image is not an HTTP error but ``IMAGE_OK=0``
with the reason, so the installer can report it to the head node in its own words.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import shlex
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Interface, Network, Node, Setting
from haoscar.errors import NotFound, UserError
from haoscar.provision.image_checksum import stream_sha256
from haoscar.provision.images import ImageStore
from haoscar.provision.netboot_snapshot import SETTING_COMPUTE_ADDRESS, Database
from haoscar.provision.slurm_conf import MUNGE_KEY_PATH, SLURMCTLD_PORT, host_dirs
from haoscar.spec.types import parse_mac

SETTING_NFS_MOUNTS = "nfs_mounts"  # the compute nodes' NFS mounts as fstab lines, written by ``spec apply``
# Files every compute node gets, {path: [content, mode]}, written by ``spec apply`` (the NFS remount agent:
# ``nfs_ganesha_client.node_files``); a systemd unit among them is enabled for multi-user.target.
SETTING_NODE_FILES = "node_files"


class AccountsScript(Protocol):
    """The cluster sync script of this moment (``commands.cluster_sync``, injected: provision cannot call it)."""

    def __call__(self) -> str: ...


@dataclass(frozen=True)
class InstallPlan:
    node: str
    fqdn: str
    domain: str
    ifname: str
    mac: str
    ip: str
    prefix: int
    netmask: str
    gateway: str
    image: str
    image_ok: bool
    image_error: str
    image_version: int
    image_bytes: int
    image_files: int
    image_sha256: str  # of the tar stream the boot server sends (image_checksum); the installer checks it
    ip_assignment: str
    post_install: str
    hosts: str
    authorized_keys: str  # haoscar's public key for root on the node (the image carries no /root of a head)
    # The cluster's munge key, base64: only in this per-node plan, which only this node's install token opens; never
    # in an image (any booting node can download those, and the key forges any user's Slurm credentials).
    munge_key: str = ""
    # Where the node reaches the heads' services (the private alias when the spec has one, which follows the active
    # head): /home over NFS, NTP, slurmd's configless controller (docs/install.md "Joining the cluster").
    service_address: str = ""
    # fstab lines of the spec's NFS exports (``nfs_ganesha.client_mounts``, stored by ``spec apply``), one a line.
    nfs_fstab: str = ""
    node_files: str = ""  # base64 of a tar of those files (and the units' enabling links), unpacked onto the node
    slurmctld_port: int = SLURMCTLD_PORT
    slurm_dirs: str = " ".join(host_dirs())  # made at install: slurmd creates none of its configured directories
    # ``cluster sync``'s script (the cluster's users and groups, /etc/hosts, known hosts, root's keys), base64; the
    # installer runs it in the new system, so the node boots with the users of the cluster. "" : none injected.
    accounts_script: str = ""

    def as_shell(self) -> str:
        lines = [
            f"{key.upper()}={shlex.quote(str(int(value) if isinstance(value, bool) else value))}"
            for key, value in asdict(self).items()
        ]
        return "# haoscar install plan\n" + "\n".join(lines) + "\n"


def node_for_mac(session: Session, mac: str) -> tuple[Node, Interface]:
    row = session.execute(
        select(Node, Interface).join(Interface, Interface.node_id == Node.id).where(Interface.mac == mac)
    ).first()
    if row is None:
        raise NotFound(f"no node has MAC {mac}; assign it with haoscar mac assign NODE {mac}")
    return row[0], row[1]


def node_image(db: Database, mac: str) -> str:
    """The name of the image the node owning ``mac`` installs (NotFound when it has none)."""
    with db.session() as session:
        node, _iface = node_for_mac(session, mac)
        if node.image is None:
            raise NotFound(f"node {node.name} has no image; assign one with haoscar node set {node.name} --image NAME")
        return node.image.name


def hosts_file(session: Session) -> str:
    """/etc/hosts for an installed node: every node by its private address, as the head's DNS answers."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    rows = session.execute(
        select(Node.name, Node.domain, Interface.ip)
        .join(Interface, Interface.node_id == Node.id)
        .where(Interface.network == "private")
        .order_by(Interface.ip)
    ).all()
    lines += [f"{ip}\t{name}.{domain}\t{name}" for name, domain, ip in rows]
    return "\n".join(lines)


def _image_facts(state_dir: Path, name: str | None, node: str) -> tuple[bool, str, int, int, int, str, str]:
    """(ok, error, version, bytes, files, ip_assignment, post_install) of the image as the store holds it."""
    if not name:
        return (
            False,
            f"node {node} has no image; assign one with haoscar node set {node} --image NAME",
            0,
            0,
            0,
            "static",
            "beep",
        )
    store = ImageStore(state_dir)
    try:
        version = store.current(name)
        if version is None:
            store.current_root(name)  # raises the store's own explanation
            raise NotFound(f"image {name!r} has no version yet")
        meta = store.meta(name, version)
    except UserError as exc:
        return False, f"image {name} is missing on the server: {exc.message}", 0, 0, 0, "static", "beep"
    return True, "", version, meta.bytes, meta.files, meta.ip_assignment, meta.post_install


def install_plan(
    db: Database,
    state_dir: Path,
    mac: str,
    munge_key_path: Path = Path(MUNGE_KEY_PATH),
    *,
    accounts: AccountsScript | None = None,
) -> InstallPlan:
    try:
        mac = parse_mac(mac)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    with db.session() as session:
        node, iface = node_for_mac(session, mac)
        image_name = node.image.name if node.image is not None else None
        gateway = session.execute(select(Network.gateway).where(Network.name == iface.network)).scalar_one_or_none()
        hosts = hosts_file(session)
        name, domain = node.name, node.domain
        ifname, ip, prefix = iface.name, iface.ip, iface.prefix
        db_ip_assignment = node.image.ip_assignment if node.image is not None else "static"
        db_post_install = node.image.post_install if node.image is not None else "beep"
        service_address = session.get(Setting, SETTING_COMPUTE_ADDRESS)
        nfs_mounts = session.get(Setting, SETTING_NFS_MOUNTS)
        extra = session.get(Setting, SETTING_NODE_FILES)
        extra_files: dict[str, list[Any]] = dict(extra.value) if extra is not None and extra.value else {}
    ok, error, version, size, files, ip_assignment, post_install = _image_facts(state_dir, image_name, name)
    sha = ""
    if not ok:
        ip_assignment, post_install = db_ip_assignment, db_post_install
    else:
        assert image_name is not None
        sha = stream_sha256(ImageStore(state_dir).version_root(image_name, version))
    return InstallPlan(
        node=name,
        fqdn=f"{name}.{domain}",
        domain=domain,
        ifname=ifname,
        mac=mac,
        ip=ip,
        prefix=prefix,
        netmask=str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask),
        gateway=gateway or "",
        image=image_name or "",
        image_ok=ok,
        image_error=error,
        image_version=version,
        image_bytes=size,
        image_files=files,
        image_sha256=sha,
        ip_assignment=ip_assignment,
        post_install=post_install,
        hosts=hosts,
        authorized_keys=_public_key(state_dir),
        munge_key=_munge_key(munge_key_path),
        service_address=str(service_address.value) if service_address is not None else "",
        nfs_fstab="\n".join(nfs_mounts.value) if nfs_mounts is not None else "",
        node_files=_b64(files_tar(extra_files)) if extra_files else "",
        accounts_script=_b64(accounts().encode()) if accounts is not None else "",
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def files_tar(files: dict[str, list[Any]]) -> bytes:
    """A tar of ``files`` ({path: [content, mode]}, owned by root) plus, for each systemd unit among them with
    ``WantedBy=multi-user.target``, the link ``systemctl enable`` would make."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path, (content, mode) in sorted(files.items()):
            data = str(content).encode()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(data), int(mode)
            tar.addfile(info, io.BytesIO(data))
            if path.endswith(".service") and "WantedBy=multi-user.target" in str(content):
                link = tarfile.TarInfo(f"etc/systemd/system/multi-user.target.wants/{path.rsplit('/', 1)[1]}")
                link.type, link.linkname, link.mode = tarfile.SYMTYPE, path, 0o777
                tar.addfile(link)
    return out.getvalue()


def _public_key(state_dir: Path) -> str:
    """haoscar's ssh public key (``STATE/ssh/id_ed25519.pub``) when it has one; never made here."""
    try:
        return (state_dir / "ssh" / "id_ed25519.pub").read_text().strip()
    except OSError:
        return ""


def _munge_key(path: Path) -> str:
    """The cluster's munge key (made by the first ``slurm sync``) as base64, or "" while there is none."""
    try:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return ""
