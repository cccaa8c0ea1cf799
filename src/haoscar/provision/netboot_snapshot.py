"""What DHCP and network boot need to know, read from the cluster database in one query into plain dataclasses.

Rendering works on these snapshots only, never on ORM objects: loading 10,000 ORM nodes costs more than rendering
them, so the query selects exactly the columns it needs (SQLAlchemy Core rows).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Image, Interface, Network, Node, Setting
from haoscar.errors import FieldError, UserError

DEFAULT_BOOT_PORT = 8470

# Keys of the settings table this part of haoscar reads (all optional).
SETTING_INTERFACE = "dhcp.interface"
SETTING_QUARANTINE = "dhcp.quarantine"
SETTING_SERVER = "netboot.server"
SETTING_PORT = "netboot.port"
# Where compute nodes reach the head: the private alias IP when the spec has one (written by ``spec apply``).
SETTING_COMPUTE_ADDRESS = "compute_address"


class Database(Protocol):
    """The cluster database as every provisioning operation sees it: a source of sessions."""

    def session(self) -> AbstractContextManager[Session]: ...


@dataclass(frozen=True, slots=True)
class NodeBoot:
    """One node as DHCP and network boot see it: its private address, MAC, boot mode and image."""

    name: str
    domain: str
    role: str
    boot_mode: str
    install_state: str
    image: str | None
    ip: str
    mac: str | None


@dataclass(frozen=True, slots=True)
class QuarantineRange:
    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


@dataclass(frozen=True, slots=True)
class NetbootSettings:
    """Cluster-wide values of the DHCP / boot configuration."""

    interface: str
    subnet: ipaddress.IPv4Network
    server_ip: str
    port: int
    domain: str
    quarantine: QuarantineRange | None = None
    gateway: str | None = None  # the private network's gateway, when the spec gives one
    lease_time: str = "12h"
    log_dhcp: bool = True

    @property
    def router(self) -> str:
        """DHCP's router option: the private gateway, else the compute-facing address (dnsmasq would name its own
        interface address, the head's own IP, which does not follow a failover)."""
        return self.gateway or self.server_ip

    @property
    def server_url(self) -> str:
        return f"http://{self.server_ip}:{self.port}"


def parse_quarantine(text: str, subnet: ipaddress.IPv4Network) -> QuarantineRange:
    """``START-END`` inside the private subnet, e.g. 198.18.0.200-198.18.0.250."""
    start_text, sep, end_text = text.partition("-")
    try:
        if not sep:
            raise ValueError
        start = ipaddress.IPv4Address(start_text.strip())
        end = ipaddress.IPv4Address(end_text.strip())
    except ValueError:
        raise FieldError(
            "quarantine", f"range {text!r} is not START-END; write e.g. 198.18.0.200-198.18.0.250", bare=True
        ) from None
    hosts = (subnet.network_address, subnet.broadcast_address)
    if start not in subnet or end not in subnet or start in hosts or end in hosts:
        raise FieldError(
            "quarantine",
            f"range {text} is not inside the private subnet {subnet}; pick host addresses there",
            bare=True,
        )
    if end < start:
        raise FieldError("quarantine", f"range {text} ends before it starts; write the lower address first", bare=True)
    return QuarantineRange(start, end)


def _settings_map(session: Session) -> dict[str, Any]:
    return {key: value for key, value in session.execute(select(Setting.key, Setting.value)).all()}


def read_settings(session: Session, *, interface: str | None = None) -> NetbootSettings:
    """The private network, the boot server's address and the stored DHCP settings.

    The boot server's address, unless ``dhcp configure --server`` set one, is the compute-facing address ``spec
    apply`` stored (the private alias IP, which follows the active head), else the primary head's private IP."""
    private = session.execute(select(Network.subnet, Network.gateway).where(Network.name == "private")).first()
    subnet_text = private.subnet if private is not None else None
    if subnet_text is None:
        raise UserError("the database has no private network; apply a cluster spec first (haoscar spec apply FILE)")
    subnet = ipaddress.IPv4Network(subnet_text)
    head = session.execute(
        select(Interface.ip, Interface.name, Node.domain)
        .join(Node, Interface.node_id == Node.id)
        .where(Node.role == "primary", Interface.network == "private")
    ).first()
    if head is None:
        raise UserError("the database has no primary head on the private network; apply a cluster spec first")
    stored = _settings_map(session)
    quarantine_text = stored.get(SETTING_QUARANTINE)
    quarantine = parse_quarantine(str(quarantine_text), subnet) if quarantine_text else None
    return NetbootSettings(
        interface=interface or str(stored.get(SETTING_INTERFACE) or head.name),
        subnet=subnet,
        server_ip=str(stored.get(SETTING_SERVER) or stored.get(SETTING_COMPUTE_ADDRESS) or head.ip),
        port=int(stored.get(SETTING_PORT) or DEFAULT_BOOT_PORT),
        domain=head.domain,
        quarantine=quarantine,
        gateway=private.gateway if private is not None else None,
    )


def read_nodes(session: Session, names: Collection[str] | None = None) -> list[NodeBoot]:
    """Every node with a private interface (or only ``names``), sorted by name, in one query."""
    query = (
        select(
            Node.name,
            Node.domain,
            Node.role,
            Node.boot_mode,
            Node.install_state,
            Image.name,
            Interface.ip,
            Interface.mac,
        )
        .join(Interface, (Interface.node_id == Node.id) & (Interface.network == "private"))
        .outerjoin(Image, Image.id == Node.image_id)
        .order_by(Node.name)
    )
    if names is not None:
        query = query.where(Node.name.in_(sorted(names)))
    return [NodeBoot(*row) for row in session.execute(query).all()]


def save_settings(
    db: Database,
    *,
    interface: str | None = None,
    quarantine: str | None = None,
    server: str | None = None,
    port: int | None = None,
) -> NetbootSettings:
    """Store DHCP / boot settings (``quarantine=""`` removes the range), checked first; returns the result."""
    from haoscar.spec.types import parse_ifname, parse_ipv4

    with db.session() as session:
        current = read_settings(session)
        values: dict[str, Any] = {}
        if interface is not None:
            try:
                values[SETTING_INTERFACE] = parse_ifname(interface)
            except ValueError as exc:
                raise FieldError("interface", str(exc), sep=": ") from None
        if quarantine is not None:
            if quarantine:
                q = parse_quarantine(quarantine, current.subnet)
                inside = [
                    f"{name} ({ip})"
                    for name, ip in session.execute(
                        select(Node.name, Interface.ip).join(Interface, Interface.node_id == Node.id)
                    ).all()
                    if q.start <= ipaddress.IPv4Address(ip) <= q.end
                ]
                if inside:
                    raise FieldError(
                        "quarantine",
                        f"range {q} holds addresses of nodes: {', '.join(inside[:5])}; pick a range no node uses",
                        bare=True,
                    )
                values[SETTING_QUARANTINE] = str(q)
            else:
                values[SETTING_QUARANTINE] = None
        if server is not None:
            try:
                values[SETTING_SERVER] = str(parse_ipv4(server))
            except ValueError as exc:
                raise FieldError("server", str(exc), sep=": ") from None
        if port is not None:
            if not 1 <= port <= 65535:
                raise FieldError("port", f"{port} is out of range; use 1-65535, e.g. {DEFAULT_BOOT_PORT}")
            values[SETTING_PORT] = port
        for key, value in values.items():
            row = session.get(Setting, key)
            if value is None:
                if row is not None:
                    session.delete(row)
            elif row is None:
                session.add(Setting(key=key, value=value))
            else:
                row.value = value
        session.flush()
        return read_settings(session)
