"""``haoscar spec apply``: load a cluster spec into the database, idempotently.

Applying the same spec twice writes nothing the second time. Nodes that came from an earlier spec and are no longer
in this one are only reported (``removed_pending``) unless ``prune`` is asked for; nodes defined by hand
(``node add``, ``standby add``) are never pruned. A MAC assigned after the spec was applied (``mac assign``) is
kept as long as the spec gives none for that interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from haoscar.commands.env import Env
from haoscar.commands.wiring import store_images
from haoscar.db.folding import fold
from haoscar.db.images import sync_images_in
from haoscar.db.models import Group, Image, Interface, Network, Node, Setting, utcnow
from haoscar.db.session import Database, record_event
from haoscar.errors import FieldError, FieldProblem, UserError, ref
from haoscar.provision.install_plan import SETTING_NFS_MOUNTS, SETTING_NODE_FILES
from haoscar.provision.install_states import InstallState
from haoscar.provision.netboot_snapshot import SETTING_COMPUTE_ADDRESS
from haoscar.provision.nfs_ganesha import client_mounts
from haoscar.provision.nfs_ganesha_client import node_files
from haoscar.spec.loader import load_spec
from haoscar.spec.models import ClusterSpec
from haoscar.spec.nodes import InterfaceDef, NodeDef, all_nodes, group_label, group_names
from haoscar.spec.topology import compute_facing_address

Images = dict[str, Image]


@dataclass
class ApplyReport:
    """What an apply did, by node name; ``other`` names the networks, images, groups and settings it changed."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed_pending: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    @property
    def wrote(self) -> bool:
        return bool(self.added or self.changed or self.removed or self.other)

    def folded(self) -> dict[str, str]:
        """Each list of node names as a folded node set, e.g. node[01-16]."""
        names = ("added", "changed", "unchanged", "removed", "removed_pending")
        return {name: fold(getattr(self, name)) for name in names}

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "unchanged": len(self.unchanged),
            "removed_pending": self.removed_pending,
            "removed": self.removed,
            "other": self.other,
        }


def _assign(obj: Any, **values: Any) -> bool:
    """Set only the attributes that differ, so an unchanged row is never written (and keeps its updated_at)."""
    changed = False
    for key, value in values.items():
        if getattr(obj, key) != value:
            setattr(obj, key, value)
            changed = True
    return changed


def _apply_settings(session: Session, spec: ClusterSpec, report: ApplyReport) -> None:
    # compute_address: where compute nodes reach the head (the private alias when the spec has one), so the
    # netboot renderer on either head, from the replicated database, points them at the same address.
    settings = (
        ("cluster_name", spec.cluster.name),
        ("domain", spec.cluster.domain),
        (SETTING_COMPUTE_ADDRESS, str(compute_facing_address(spec))),
        # What an installing node mounts (its install plan carries them): docs/install.md "Joining the cluster".
        (SETTING_NFS_MOUNTS, [mount.fstab_line() for mount in client_mounts(spec)]),
        (SETTING_NODE_FILES, {path: list(entry) for path, entry in node_files(spec).items()}),
    )
    for key, value in settings:
        row = session.get(Setting, key)
        if row is None:
            session.add(Setting(key=key, value=value))
            report.other.append(f"setting {key}")
        elif row.value != value:
            row.value = value
            report.other.append(f"setting {key}")


def _apply_networks(session: Session, spec: ClusterSpec, report: ApplyReport) -> None:
    wanted = {"private": spec.networks.private, "public": spec.networks.public}
    if spec.networks.heartbeat is not None:
        wanted["heartbeat"] = spec.networks.heartbeat
    for stale in session.scalars(select(Network)):
        if stale.name not in wanted:
            session.delete(stale)
            report.other.append(f"network {stale.name} removed")
    for name, net in wanted.items():
        subnet, gateway = str(net.subnet), str(net.gateway) if net.gateway else None
        row = session.get(Network, name)
        if row is None:
            session.add(Network(name=name, subnet=subnet, gateway=gateway))
            report.other.append(f"network {name}")
        elif _assign(row, subnet=subnet, gateway=gateway):
            report.other.append(f"network {name}")


def _apply_images(session: Session, spec: ClusterSpec, report: ApplyReport) -> dict[str, Image]:
    images = {image.name: image for image in session.scalars(select(Image))}
    in_spec = {image.name for image in spec.images}
    for image in spec.images:
        values = {
            "source": image.source,
            "ip_assignment": image.ip_assignment,
            "post_install": image.post_install,
            "from_spec": True,
        }
        row = images.get(image.name)
        if row is None:
            row = Image(name=image.name, **values)
            session.add(row)
            images[image.name] = row
            report.other.append(f"image {image.name}")
        elif _assign(row, **values):
            report.other.append(f"image {image.name}")
    # An image dropped from the spec may still be in the image store or in use: it stays, no longer the spec's.
    for name, row in images.items():
        if row.from_spec and name not in in_spec:
            row.from_spec = False
            report.other.append(f"image {name} no longer in the spec")
    session.flush()
    return images


def _apply_groups(
    session: Session, spec: ClusterSpec, images: dict[str, Image], report: ApplyReport
) -> dict[str, Group]:
    groups = {group.name: group for group in session.scalars(select(Group))}
    wanted: dict[str, dict[str, Any]] = {
        "heads": {
            "image_id": None,
            "domain": spec.cluster.domain,
            "base_name": None,
            "start_number": None,
            "padding": None,
            "nodeset": fold([spec.heads.primary.hostname, spec.heads.standby.hostname]),
            "netmask": str(spec.heads.primary.netmask),
            "gateway": None,
            "interface": None,
            "start_ip": None,
        }
    }
    for index, client in enumerate(spec.clients):
        image = images.get(client.image)
        wanted[group_label(client, index)] = {
            "image_id": image.id if image is not None else None,
            "domain": client.domain or spec.cluster.domain,
            "base_name": client.base_name,
            "start_number": client.start_number if client.base_name else None,
            "padding": client.padding if client.base_name else None,
            "nodeset": client.nodeset or fold(group_names(client)),
            "netmask": str(client.netmask),
            "gateway": str(client.gateway) if client.gateway else None,
            "interface": client.interface,
            "start_ip": str(client.start_ip),
        }
    for name, values in wanted.items():
        row = groups.get(name)
        if row is None:
            row = Group(name=name, from_spec=True, **values)
            session.add(row)
            groups[name] = row
            report.other.append(f"group {name}")
        elif _assign(row, from_spec=True, **values):
            report.other.append(f"group {name}")
    session.flush()
    return groups


def _check_collisions(defs: list[NodeDef], existing: dict[str, Node], leaving: set[str], prune: bool) -> None:
    """A spec address or MAC held by a node this apply will not update is a conflict (before anything is written)."""
    in_spec = {d.name for d in defs}
    ip_owner: dict[str, str] = {}
    mac_owner: dict[str, str] = {}
    for node in existing.values():
        for held in node.interfaces:
            ip_owner[held.ip] = node.name
            if held.mac:
                mac_owner[held.mac] = node.name
    problems: list[FieldProblem] = []
    for d in defs:
        if d.role == "compute":
            continue
        for node in existing.values():
            if node.role == d.role and node.name != d.name and not node.from_spec:
                fix = f"delete it (`haoscar node delete {node.name}`) or name the head {node.name} in the spec"
                clash = (
                    f"{d.name}: the spec's {d.role} head collides with {node.name}, the {d.role} head defined by hand"
                )
                problems.append(FieldProblem("file", f"{clash}; {fix}", None))
    for d in defs:
        for iface in d.interfaces:
            for kind, value, owners in (("IP", str(iface.ip), ip_owner), ("MAC", iface.mac, mac_owner)):
                owner = owners.get(value) if value else None
                if owner is None or owner in in_spec or (prune and owner in leaving):
                    continue
                to_fix = "prune" if owner in leaving else "file"
                if owner in leaving:
                    fix = f"{owner} is no longer in the spec: apply with {ref('prune')} to delete it"
                else:
                    fix = f"{owner} was defined by hand: delete it (`haoscar node delete {owner}`) or change the spec"
                clash = f"{d.name} {iface.name}: {kind} {value} is held by node {owner}"
                problems.append(FieldProblem(to_fix, f"{clash}; {fix}", None))
    if problems:
        raise FieldError.several(problems, "the spec collides with nodes in the database; nothing was changed")


def _wanted_interfaces(d: NodeDef, node: Node | None, spec_macs: set[str]) -> list[InterfaceDef]:
    """The spec's interfaces, keeping a MAC assigned later when the spec gives none (and no other node gets it)."""
    current = {iface.name: iface for iface in node.interfaces} if node is not None else {}
    result = []
    for want in d.interfaces:
        kept = current.get(want.name)
        if want.mac is None and kept is not None and kept.mac and kept.mac not in spec_macs:
            result.append(InterfaceDef(want.name, want.network, want.ip, want.prefix, kept.mac))
        else:
            result.append(want)
    return result


def _images_for(session: Session, db: Database, spec: ClusterSpec, defs: list[NodeDef], report: ApplyReport) -> Images:
    """The spec's images as rows; an image the nodes name must be in the spec or in the image store."""
    images = _apply_images(session, spec, report)
    missing = sorted({d.image for d in defs if d.image is not None and d.image not in images})
    if missing:
        # The image store may hold them (built or fetched with `haoscar image`) without the spec listing them.
        sync_images_in(session, store_images(db.state_dir))
        session.flush()
        images = {image.name: image for image in session.scalars(select(Image))}
        missing = [name for name in missing if name not in images]
    if missing:
        raise UserError(f"the spec names unknown images {', '.join(missing)}; add them under images:")
    return images


def _remove_leaving(
    session: Session, existing: dict[str, Node], leaving: set[str], prune: bool, report: ApplyReport
) -> None:
    for name in sorted(leaving):
        if prune:
            session.delete(existing.pop(name))
            report.removed.append(name)
        else:
            report.removed_pending.append(name)
    session.flush()


def _detach_changed_interfaces(
    defs: list[NodeDef], existing: dict[str, Node], spec_macs: set[str], touched: set[str]
) -> dict[str, list[InterfaceDef]]:
    """Each node's interfaces as the spec wants them; an interface whose address changes is removed now and added
    again later (delete + insert), so that no unique constraint sees two rows with one IP or MAC half-way."""
    plans: dict[str, list[InterfaceDef]] = {}
    for d in defs:
        node = existing.get(d.name)
        plans[d.name] = _wanted_interfaces(d, node, spec_macs)
        if node is None:
            continue
        wanted = {i.name: i for i in plans[d.name]}
        for iface in list(node.interfaces):
            target = wanted.get(iface.name)
            if target is None or iface.ip != str(target.ip) or iface.mac != target.mac:
                node.interfaces.remove(iface)
                touched.add(d.name)
    return plans


def _upsert_node(
    session: Session, d: NodeDef, node: Node | None, *, values: dict[str, Any], has_mac: bool, report: ApplyReport
) -> tuple[Node, bool]:
    """The node row, created or updated; True when an existing node changed."""
    if node is None:
        state = InstallState.MAC_ASSIGNED if has_mac else InstallState.DEFINED
        boot = "netboot"
        if d.role == "primary":
            # The primary head runs haoscar itself: it is installed and never network-boots from itself.
            state, boot = InstallState.INSTALLED, "localboot"
        node = Node(name=d.name, install_state=state.value, boot_mode=boot, **values)
        session.add(node)
        report.added.append(d.name)
        return node, False
    if has_mac and node.install_state == InstallState.DEFINED:
        values["install_state"] = InstallState.MAC_ASSIGNED.value
    return node, _assign(node, **values)


def _apply_node(
    session: Session,
    d: NodeDef,
    node: Node | None,
    *,
    plan: list[InterfaceDef],
    refs: tuple[Images, dict[str, Group]],
    report: ApplyReport,
    touched: set[str],
) -> None:
    images, groups = refs
    image = images[d.image] if d.image is not None else None
    values = {
        "role": d.role,
        "domain": d.domain,
        "group_id": groups[d.group].id if d.group is not None else None,
        "image_id": image.id if image is not None else None,
        "from_spec": True,
    }
    node, changed = _upsert_node(session, d, node, values=values, has_mac=any(i.mac for i in plan), report=report)
    if changed:
        touched.add(d.name)
    present = {iface.name: iface for iface in node.interfaces}
    for want in plan:
        row = present.get(want.name)
        if row is None:
            node.interfaces.append(
                Interface(name=want.name, network=want.network, ip=str(want.ip), prefix=want.prefix, mac=want.mac)
            )
            touched.add(d.name)
        elif _assign(row, network=want.network, prefix=want.prefix):
            touched.add(d.name)
    if d.name in report.added:
        return
    if d.name in touched:
        node.updated_at = utcnow()
        report.changed.append(d.name)
    else:
        report.unchanged.append(d.name)


def _drop_empty_groups(session: Session, spec: ClusterSpec, groups: dict[str, Group], report: ApplyReport) -> None:
    """A spec group left with no nodes goes; one still holding nodes waits for --prune like its nodes."""
    wanted_groups = {"heads"} | {group_label(c, i) for i, c in enumerate(spec.clients)}
    for name, group in groups.items():
        empty = not session.scalars(select(Node.id).where(Node.group_id == group.id)).first()
        if group.from_spec and name not in wanted_groups and empty:
            session.delete(group)
            report.other.append(f"group {name} removed")


def apply_spec(db: Database, spec: ClusterSpec, prune: bool = False) -> ApplyReport:
    """Make the database hold what ``spec`` describes; see the module docstring for the rules."""
    report = ApplyReport()
    defs = all_nodes(spec)
    by_name = {d.name: d for d in defs}
    spec_macs = {i.mac for d in defs for i in d.interfaces if i.mac}
    with db.session() as session:
        existing = {n.name: n for n in session.scalars(select(Node).options(selectinload(Node.interfaces)))}
        leaving = {name for name, node in existing.items() if node.from_spec and name not in by_name}
        _check_collisions(defs, existing, leaving, prune)
        images = _images_for(session, db, spec, defs, report)
        _apply_settings(session, spec, report)
        _apply_networks(session, spec, report)
        groups = _apply_groups(session, spec, images, report)
        # Deletions first, then address changes as delete + insert.
        _remove_leaving(session, existing, leaving, prune, report)
        touched: set[str] = set()
        plans = _detach_changed_interfaces(defs, existing, spec_macs, touched)
        session.flush()
        for d in defs:
            node = existing.get(d.name)
            _apply_node(session, d, node, plan=plans[d.name], refs=(images, groups), report=report, touched=touched)
        session.flush()
        _drop_empty_groups(session, spec, groups, report)
        if report.wrote:
            record_event(
                session,
                "spec.applied",
                f"spec {spec.cluster.name} applied: {len(report.added)} added, {len(report.changed)} changed, "
                f"{len(report.removed)} removed, {len(report.removed_pending)} no longer in the spec",
                data=report.as_dict(),
            )
    return report


@dataclass(frozen=True)
class ApplySpec:
    """``haoscar spec apply``: the spec file, and whether nodes an earlier spec defined and this one lacks go."""

    file: Path
    prune: bool = False


def spec_apply(env: Env, request: ApplySpec) -> ApplyReport:
    """Load a spec file (its problems raise SpecError before the database is opened), then apply it."""
    spec = load_spec(request.file)
    return apply_spec(env.database, spec, prune=request.prune)
