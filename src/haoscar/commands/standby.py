"""HA-OSCAR's Add Standby Server: the standby head defined as a node of its own (``haoscar standby add``).

Like every node operation, all input is checked against the database before anything is written, in one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.commands.env import Env
from haoscar.commands.nodes import DEFAULT_DOMAIN, NodeRow, _rows, _setting, _stored
from haoscar.db.addresses import Taken, check_in_subnet, network_subnet, parsed, subnet_for
from haoscar.db.images import image_named
from haoscar.db.models import Group, Interface, Node, Setting
from haoscar.db.session import Database, record_event
from haoscar.errors import FieldError, UserError, ref
from haoscar.spec.types import parse_domain, parse_hostname, parse_ifname, parse_ipv4, parse_netmask

__all__ = ["StandbyAdded", "StandbyServer", "add_standby", "standby_add"]


@dataclass(frozen=True)
class StandbyServer:
    """HA-OSCAR's Add Standby Server dialog."""

    alias_ip: str
    local_ip: str
    image: str = "serverimage"
    primary_public_interface: str = "eth1"
    standby_public_interface: str = "eth1"
    netmask: str | None = None
    gateway: str | None = None
    hostname: str = "standby"
    public_ip: str | None = None
    private_interface: str = "eth0"
    domain: str | None = None


@dataclass(frozen=True)
class _Fields:
    """The dialog's fields, parsed (every text checked before the database is opened)."""

    hostname: str
    alias: IPv4Address
    local: IPv4Address
    netmask: IPv4Address | None
    gateway: IPv4Address | None
    public: IPv4Address | None
    primary_if: str
    standby_if: str
    private_if: str


def _parse(request: StandbyServer) -> _Fields:
    def optional(field: str, value: str | None) -> IPv4Address | None:
        parser = parse_netmask if field == "netmask" else parse_ipv4
        return parsed(field, parser, value) if value is not None else None

    fields = _Fields(
        hostname=parsed("hostname", parse_hostname, request.hostname),
        alias=parsed("alias_ip", parse_ipv4, request.alias_ip),
        local=parsed("local_ip", parse_ipv4, request.local_ip),
        netmask=optional("netmask", request.netmask),
        gateway=optional("gateway", request.gateway),
        public=optional("public_ip", request.public_ip),
        primary_if=parsed("primary_public_interface", parse_ifname, request.primary_public_interface),
        standby_if=parsed("standby_public_interface", parse_ifname, request.standby_public_interface),
        private_if=parsed("private_interface", parse_ifname, request.private_interface),
    )
    if fields.standby_if == fields.private_if:
        raise FieldError(
            "standby_public_interface", f"{fields.standby_if} is also the private interface; use e.g. eth1"
        )
    return fields


def _check(session: Session, f: _Fields, subnet: IPv4Network) -> None:
    """The addresses against the applied spec's networks and the nodes already defined."""
    check_in_subnet("local_ip", f.local, subnet)
    public_net = network_subnet(session, "public")
    if f.gateway is not None and public_net is None:
        check_in_subnet("gateway", f.gateway, subnet)
    if public_net is not None:
        check_in_subnet("alias_ip", f.alias, public_net)
        if f.public is not None:
            check_in_subnet("public_ip", f.public, public_net)
    taken = Taken.load(session)
    if f.hostname in taken.names:
        raise FieldError("hostname", f"{f.hostname} is already a node; choose another name, e.g. head2")
    for field, address in (("local_ip", f.local), ("public_ip", f.public), ("alias_ip", f.alias)):
        if address is not None and str(address) in taken.ips:
            raise FieldError(field, f"{address} is already used by node {taken.ips[str(address)]}")
    if f.public is not None and f.public == f.alias:
        raise FieldError("public_ip", f"must differ from {ref('alias_ip')}: the alias moves between the heads")


def _remember_dialog(session: Session, f: _Fields, image: str, subnet: IPv4Network) -> None:
    """The dialog's values as a setting: the HA configuration reads the interfaces and the alias from it."""
    dialog = {
        "hostname": f.hostname,
        "image": image,
        "primary_public_interface": f.primary_if,
        "standby_public_interface": f.standby_if,
        "alias_ip": str(f.alias),
        "local_ip": str(f.local),
        "netmask": str(f.netmask or subnet.netmask),
        "gateway": str(f.gateway) if f.gateway else None,
        "public_ip": str(f.public) if f.public else None,
    }
    row = session.get(Setting, "standby_server")
    if row is None:
        session.add(Setting(key="standby_server", value=dialog))
    else:
        row.value = dialog


def add_standby(db: Database, request: StandbyServer) -> NodeRow:
    """Define the standby head as a node of its own (role standby) with its private and public interfaces."""
    f = _parse(request)
    with db.session() as session:
        existing = session.scalar(select(Node.name).where(Node.role == "standby"))
        if existing is not None:
            raise UserError(
                f"the standby head is already defined as {existing}; "
                f"delete it first with `haoscar node delete {existing}`"
            )
        domain = parsed("domain", parse_domain, request.domain or _setting(session, "domain") or DEFAULT_DOMAIN)
        image = image_named(session, request.image, _stored(db))
        subnet = subnet_for(session, "private", f.local, f.netmask, field="local_ip")
        _check(session, f, subnet)
        heads = session.scalar(select(Group).where(Group.name == "heads"))
        if heads is None:
            heads = Group(name="heads", from_spec=False)
            session.add(heads)
            session.flush()
        node = Node(
            name=f.hostname, role="standby", domain=domain, group_id=heads.id, image_id=image.id, from_spec=False
        )
        node.interfaces.append(
            Interface(name=f.private_if, network="private", ip=str(f.local), prefix=subnet.prefixlen)
        )
        if f.public is not None:
            public_net = network_subnet(session, "public")
            prefix = public_net.prefixlen if public_net is not None else subnet.prefixlen
            node.interfaces.append(Interface(name=f.standby_if, network="public", ip=str(f.public), prefix=prefix))
        session.add(node)
        _remember_dialog(session, f, image.name, subnet)
        message = f"standby head {f.hostname} defined ({f.local}, alias {f.alias})"
        record_event(session, "standby.added", message, node=f.hostname)
        session.flush()
        return _rows(session, [f.hostname])[0]


@dataclass(frozen=True)
class StandbyAdded:
    """The standby head as ``node list`` shows it, with the alias IP it takes over."""

    node: NodeRow
    alias_ip: str

    def as_dict(self) -> dict[str, Any]:
        return self.node.as_dict() | {"alias_ip": self.alias_ip}


def standby_add(env: Env, request: StandbyServer) -> StandbyAdded:
    """Add Standby Server."""
    return StandbyAdded(add_standby(env.database, request), request.alias_ip)
