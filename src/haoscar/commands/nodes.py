"""Client definitions (OSCAR's Define Clients), the standby head (HA-OSCAR's Add Standby Server), and node views.

Every operation validates all of its input against the database before it writes anything, and writes in one
transaction: a bad MAC, a colliding IP or a range that overflows its subnet leaves the database as it was.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, aliased

from haoscar.commands.env import Env
from haoscar.commands.wiring import store_images
from haoscar.db.addresses import Taken, check_in_subnet, check_range, network_subnet, parsed, subnet_for
from haoscar.db.folding import fold, some
from haoscar.db.images import image_named, nodes_using_image
from haoscar.db.models import BOOT_MODES, Group, Image, Interface, Node, Setting, utcnow
from haoscar.db.session import Database, record_event
from haoscar.errors import FieldError, NotFound, UserError, ref
from haoscar.provision.install_progress import monitor_rows
from haoscar.provision.netboot_macs import assign_in_session
from haoscar.spec.nodes import expand_nodeset, node_order, oscar_names, sorted_nodes
from haoscar.spec.types import parse_domain, parse_hostname, parse_ifname, parse_ipv4, parse_mac, parse_netmask

__all__ = [
    "DefineClients",
    "DefineResult",
    "DeleteNodes",
    "DeletedNodes",
    "ListNodes",
    "NodeList",
    "NodeRow",
    "SetNodes",
    "SetResult",
    "define_clients",
    "delete_nodes",
    "image_in_use",
    "list_nodes",
    "node_add",
    "node_delete",
    "node_list",
    "node_set",
    "set_nodes",
]

DEFAULT_DOMAIN = "cluster.local"
ROLE_ORDER = {"primary": 0, "standby": 1, "compute": 2}


# ---------------------------------------------------------------------------------------------------------- views


@dataclass(frozen=True)
class NodeRow:
    """One line of ``haoscar node list``."""

    name: str
    role: str
    group: str | None
    image: str | None
    domain: str
    interface: str | None
    ip: str | None
    mac: str | None
    boot_mode: str
    install_state: str
    from_spec: bool
    image_version: int | None = None  # the version of its image the node runs (install, `node sync`)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _select_names(session: Session, nodeset: str | None) -> list[str] | None:
    """The node names a NODESET argument means (None = all); any unknown name is an error."""
    if nodeset is None:
        return None
    wanted = expand_nodeset(nodeset)
    known = set(session.scalars(select(Node.name)))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise NotFound(f"unknown node{'s' if len(unknown) > 1 else ''} {fold(unknown)}; `haoscar node list` shows them")
    return wanted


def _rows(session: Session, names: list[str] | None) -> list[NodeRow]:
    private = aliased(Interface)
    query = (
        select(Node, Group.name, Image.name, private.name, private.ip, private.mac)
        .outerjoin(Group, Node.group_id == Group.id)
        .outerjoin(Image, Node.image_id == Image.id)
        .outerjoin(private, (private.node_id == Node.id) & (private.network == "private"))
    )
    if names is not None:
        query = query.where(Node.name.in_(names))
    rows = [
        NodeRow(
            name=node.name,
            role=node.role,
            group=group,
            image=image,
            domain=node.domain,
            interface=ifname,
            ip=ip,
            mac=mac,
            boot_mode=node.boot_mode,
            install_state=node.install_state,
            from_spec=node.from_spec,
            image_version=node.image_version,
        )
        for node, group, image, ifname, ip, mac in session.execute(query)
    ]
    rank = node_order(row.name for row in rows)
    rows.sort(key=lambda row: (ROLE_ORDER.get(row.role, 9), rank[row.name]))
    return rows


def list_nodes(db: Database, nodeset: str | None = None) -> list[NodeRow]:
    """Every node, or those of a ClusterShell node set (heads first, then clients in natural order)."""
    with db.session(readonly=True) as session:
        return _rows(session, _select_names(session, nodeset))


def image_in_use(state_dir: Path, name: str) -> list[str]:
    """Names of the nodes whose image is ``name`` (an image in use must not be deleted)."""
    return nodes_using_image(state_dir, name)


def _stored(db: Database) -> Callable[[], list[Any]]:
    """The image store's entries, read only if an image is not in the database yet."""
    return lambda: store_images(db.state_dir)


def _setting(session: Session, key: str) -> Any:
    row = session.get(Setting, key)
    return None if row is None else row.value


# ------------------------------------------------------------------------------------------ Define Clients (add)


@dataclass(frozen=True)
class DefineClients:
    """OSCAR's Define Clients dialog, or a ClusterShell node set instead of base name + count."""

    image: str
    start_ip: str
    netmask: str | None = None
    domain: str | None = None
    base_name: str | None = None
    count: int | None = None
    start_number: int = 1
    padding: int = 0
    nodeset: str | None = None
    gateway: str | None = None
    interface: str = "eth0"
    group: str | None = None


@dataclass(frozen=True)
class DefineResult:
    group: str
    image: str
    names: list[str]
    first_ip: str
    last_ip: str

    @property
    def nodeset(self) -> str:
        return fold(self.names)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "image": self.image,
            "count": len(self.names),
            "nodeset": self.nodeset,
            "first_ip": self.first_ip,
            "last_ip": self.last_ip,
        }


def _client_names(request: DefineClients) -> list[str]:
    if request.nodeset is not None:
        if request.base_name is not None or request.count is not None:
            both = f"give either {ref('nodeset')} or {ref('base_name')} with {ref('count')}, not both"
            raise FieldError("nodeset", both, sep=None)
        names = expand_nodeset(request.nodeset)
        for name in names:
            parsed("nodeset", parse_hostname, name)
        return names
    if request.base_name is None or request.count is None:
        advice = f"give {ref('base_name')} and {ref('count')} (OSCAR's Define Clients), or {ref('nodeset')} like"
        raise FieldError("base_name" if request.base_name is None else "count", f"{advice} 'node[001-128]'", sep=None)
    parsed("base_name", parse_hostname, request.base_name)
    if request.count < 1:
        raise FieldError("count", f"{request.count}: define at least 1 client")
    if request.start_number < 0:
        raise FieldError("start_number", f"{request.start_number}: numbers start at 0 or above, e.g. 1")
    if not 0 <= request.padding <= 12:
        raise FieldError("padding", f"{request.padding}: use 0 (no padding) to 12 digits, e.g. 3 for node001")
    names = oscar_names(request.base_name, request.count, request.start_number, request.padding)
    # The longest name is the last one; a label has at most 63 characters.
    parsed("base_name", parse_hostname, names[-1])
    return names


def _group_for(session: Session, request: DefineClients, names: list[str], image: Image) -> Group:
    label = request.group or request.base_name or "clients"
    parsed("group", parse_hostname, label)
    group = session.scalar(select(Group).where(Group.name == label))
    if group is None:
        group = Group(
            name=label,
            image_id=image.id,
            domain=request.domain,
            base_name=request.base_name,
            start_number=request.start_number if request.base_name else None,
            padding=request.padding if request.base_name else None,
            nodeset=fold(names),
            netmask=request.netmask,
            gateway=request.gateway,
            interface=request.interface,
            start_ip=request.start_ip,
            from_spec=False,
        )
        session.add(group)
    else:
        group.nodeset = fold([*session.scalars(select(Node.name).where(Node.group_id == group.id)), *names])
    session.flush()
    return group


def _check_free(taken: Taken, request: DefineClients, names: list[str], ips: list[str]) -> None:
    """The new names and addresses must be nobody's yet."""
    if clashes := [name for name in names if name in taken.names]:
        fix = f"pick another {ref('base_name')} or {ref('start_number')}, or delete them first"
        message = f"node names already defined: {fold(clashes)}; {fix} with `haoscar node delete`"
        raise FieldError("nodeset" if request.nodeset is not None else "base_name", message, sep=None)
    if used := [f"{ip} ({taken.ips[ip]})" for ip in ips if ip in taken.ips]:
        fix = "start the range at a free address"
        raise FieldError("start_ip", f"{ips[0]}: addresses already in use: {some(used)}; {fix}")


def define_clients(db: Database, request: DefineClients) -> DefineResult:
    """Define compute clients the way OSCAR's Define Clients does: validate everything, then write in bulk."""
    names = _client_names(request)
    start = parsed("start_ip", parse_ipv4, request.start_ip)
    netmask = parsed("netmask", parse_netmask, request.netmask) if request.netmask is not None else None
    gateway = parsed("gateway", parse_ipv4, request.gateway) if request.gateway is not None else None
    interface = parsed("interface", parse_ifname, request.interface)
    with db.session() as session:
        domain_text = request.domain or _setting(session, "domain") or DEFAULT_DOMAIN
        domain = parsed("domain", parse_domain, domain_text)
        image = image_named(session, request.image, lambda: store_images(db.state_dir))
        subnet = subnet_for(session, "private", start, netmask, field="start_ip")
        check_range("start_ip", start, len(names), subnet)
        ips = [str(start + offset) for offset in range(len(names))]
        if gateway is not None:
            check_in_subnet("gateway", gateway, subnet)
            if str(gateway) in set(ips):
                raise FieldError("gateway", f"{gateway} lies inside the nodes' range {ips[0]}-{ips[-1]}; move one")
        _check_free(Taken.load(session), request, names, ips)
        group = _group_for(session, request, names, image)
        node_ids = session.scalars(
            insert(Node).returning(Node.id, sort_by_parameter_order=True),
            [
                {
                    "name": name,
                    "role": "compute",
                    "domain": domain,
                    "group_id": group.id,
                    "image_id": image.id,
                    "from_spec": False,
                }
                for name in names
            ],
        ).all()
        session.execute(
            insert(Interface),
            [
                {"node_id": node_id, "name": interface, "network": "private", "ip": ip, "prefix": subnet.prefixlen}
                for node_id, ip in zip(node_ids, ips, strict=True)
            ],
        )
        result = DefineResult(group=group.name, image=image.name, names=names, first_ip=ips[0], last_ip=ips[-1])
        record_event(
            session,
            "nodes.defined",
            f"defined {len(names)} clients {result.nodeset} with image {image.name}, {ips[0]}-{ips[-1]}",
            data=result.as_dict(),
        )
        return result


# ---------------------------------------------------------------------------------------------------- node set


@dataclass
class SetResult:
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"changed": fold(self.changed), "unchanged": fold(self.unchanged)}


def _private_interface(node: Node) -> Interface | None:
    return next((i for i in node.interfaces if i.network == "private"), node.interfaces[0] if node.interfaces else None)


def _set_address(
    session: Session, node: Node, new_mac: str | None, new_ip: ipaddress.IPv4Address | None
) -> tuple[Interface, bool]:
    """One node's private interface, its new MAC written and its new IP checked; True when the MAC changed."""
    iface = _private_interface(node)
    if iface is None:
        raise UserError(f"node {node.name} has no network interface to give a MAC or IP")
    taken = Taken.load(session)
    mac_changed = False
    if new_mac is not None and iface.mac != new_mac:
        # The one MAC-assignment path (as mac assign, import, collect --auto): checks that the MAC is free,
        # writes it, drops its sighting, makes a defined node mac-assigned; a later error undoes it all.
        assign_in_session(session, [(node.name, new_mac, "mac")], "node set", field="mac", record=False)
        mac_changed = True
    if new_ip is not None:
        subnet = network_subnet(session, iface.network) or ipaddress.IPv4Network(
            f"{iface.ip}/{iface.prefix}", strict=False
        )
        check_in_subnet("ip", new_ip, subnet)
        owner = taken.ips.get(str(new_ip))
        if owner is not None and str(new_ip) != iface.ip:
            raise FieldError("ip", f"{new_ip} is already used by node {owner}; pick a free address")
    return iface, mac_changed


def set_nodes(
    db: Database,
    nodeset: str,
    *,
    image: str | None = None,
    mac: str | None = None,
    ip: str | None = None,
    boot_mode: str | None = None,
    domain: str | None = None,
) -> SetResult:
    """Change nodes' image, boot mode or domain; a single node's private MAC or IP."""
    if all(value is None for value in (image, mac, ip, boot_mode, domain)):
        some_field = ", ".join(ref(name) for name in ("image", "mac", "ip", "boot_mode"))
        raise FieldError("image", f"nothing to change; give {some_field} or {ref('domain')}", sep=None)
    if boot_mode is not None and boot_mode not in BOOT_MODES:
        raise FieldError("boot_mode", f"{boot_mode!r} is unknown; use {' or '.join(BOOT_MODES)}")
    new_mac = parsed("mac", parse_mac, mac) if mac is not None else None
    new_ip = parsed("ip", parse_ipv4, ip) if ip is not None else None
    new_domain = parsed("domain", parse_domain, domain) if domain is not None else None
    result = SetResult()
    with db.session() as session:
        names = _select_names(session, nodeset)
        assert names is not None
        if (new_mac is not None or new_ip is not None) and len(names) != 1:
            one = f"{ref('mac')} and {ref('ip')} set one node's address"
            raise FieldError("nodeset", f"{one}; {nodeset!r} names {len(names)} nodes", sep=None)
        image_row = image_named(session, image, lambda: store_images(db.state_dir)) if image is not None else None
        nodes = list(session.scalars(select(Node).where(Node.name.in_(names))))
        iface, mac_changed = None, False
        if new_mac is not None or new_ip is not None:
            iface, mac_changed = _set_address(session, nodes[0], new_mac, new_ip)
        for node in nodes:
            changes: dict[str, Any] = {}
            if image_row is not None and node.image_id != image_row.id:  # a version of the old image means nothing
                changes |= {"image_id": image_row.id, "image_version": None}
            if boot_mode is not None and node.boot_mode != boot_mode:
                changes["boot_mode"] = boot_mode
            if new_domain is not None and node.domain != new_domain:
                changes["domain"] = new_domain
            touched = bool(changes)
            if iface is not None:
                if new_ip is not None and iface.ip != str(new_ip):
                    iface.ip = str(new_ip)
                    touched = True
                touched = touched or mac_changed
            for key, value in changes.items():
                setattr(node, key, value)
            if touched and not changes:
                # An interface change alone still marks the node as modified for `updated_at`.
                node.updated_at = utcnow()
            (result.changed if touched else result.unchanged).append(node.name)
        if result.changed:
            record_event(
                session,
                "nodes.changed",
                f"changed {fold(result.changed)}",
                data={"nodes": fold(result.changed), "image": image, "mac": new_mac, "ip": ip, "boot_mode": boot_mode},
            )
    return result


# ------------------------------------------------------------------------------------------------- node delete


def delete_nodes(db: Database, nodeset: str) -> list[str]:
    """Delete the nodes of a node set with their interfaces; groups left empty by hand go too."""
    with db.session() as session:
        names = _select_names(session, nodeset)
        assert names is not None
        group_ids = set(session.scalars(select(Node.group_id).where(Node.name.in_(names))))
        node_ids = select(Node.id).where(Node.name.in_(names)).scalar_subquery()
        session.execute(delete(Interface).where(Interface.node_id.in_(node_ids)))
        session.execute(delete(Node).where(Node.name.in_(names)))
        for group in session.scalars(select(Group).where(Group.id.in_(group_ids - {None}))):
            remaining = list(session.scalars(select(Node.name).where(Node.group_id == group.id)))
            if not remaining and not group.from_spec:
                session.delete(group)
            else:
                group.nodeset = fold(remaining) if remaining else None
        deleted = sorted_nodes(names)
        record_event(session, "nodes.deleted", f"deleted {fold(deleted)}", data={"nodes": fold(deleted)})
        return deleted


# ------------------------------------------------------------------------------- the commands (env, request)


@dataclass(frozen=True)
class ListNodes:
    nodeset: str | None = None  # a ClusterShell node set such as node[001-016]; None: every node


@dataclass(frozen=True)
class NodeList:
    """``haoscar node list``: the nodes, and for each failed install its stage and reason."""

    rows: list[NodeRow]
    install_detail: dict[str, str]

    @property
    def nodeset(self) -> str:
        return fold(row.name for row in self.rows)

    def as_dicts(self) -> list[dict[str, Any]]:
        return [row.as_dict() | {"install_detail": self.install_detail.get(row.name, "")} for row in self.rows]


def node_list(env: Env, request: ListNodes) -> NodeList:
    """Every node or those of a node set, heads first, then clients in natural order."""
    rows = list_nodes(env.database, request.nodeset)
    # The failure's stage and reason, as the installer or the stall watcher reported it.
    failed = {m.node: m.detail for m in monitor_rows(env.database, env.state_dir) if m.install_state == "failed"}
    return NodeList(rows, failed)


def node_add(env: Env, request: DefineClients) -> DefineResult:
    """OSCAR's Define Clients."""
    return define_clients(env.database, request)


@dataclass(frozen=True)
class SetNodes:
    nodeset: str
    image: str | None = None
    mac: str | None = None  # one node only
    ip: str | None = None  # one node only
    boot_mode: str | None = None
    domain: str | None = None


def node_set(env: Env, request: SetNodes) -> SetResult:
    return set_nodes(env.database, request.nodeset, **{k: v for k, v in asdict(request).items() if k != "nodeset"})


@dataclass(frozen=True)
class DeleteNodes:
    nodeset: str


@dataclass(frozen=True)
class DeletedNodes:
    names: list[str]

    @property
    def nodeset(self) -> str:
        return fold(self.names)

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.nodeset, "count": len(self.names)}


def node_delete(env: Env, request: DeleteNodes) -> DeletedNodes:
    return DeletedNodes(delete_nodes(env.database, request.nodeset))
