"""What a new definition must not collide with, and which subnet its addresses must come from.

Everything is loaded in a few queries into sets, so that checking ten thousand new nodes costs set look-ups, not
ten thousand queries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from haoscar.db.models import Interface, Network, Node
from haoscar.errors import FieldError, ref

T = TypeVar("T")


def parsed(field: str, parser: Callable[[Any], T], value: Any) -> T:
    """Run a ``haoscar.spec.types`` parser on a request field, turning its message into a FieldError."""
    try:
        return parser(value)
    except ValueError as exc:
        raise FieldError(field, str(exc), sep=": ") from None


@dataclass
class Taken:
    """Node names, IPs and MACs already in the database, each mapped to the node that holds it."""

    names: set[str] = field(default_factory=set)
    ips: dict[str, str] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, session: Session) -> Taken:
        taken = cls(names=set(session.scalars(select(Node.name))))
        rows = session.execute(select(Node.name, Interface.ip, Interface.mac).join(Interface.node))
        for name, ip, mac in rows:
            taken.ips[ip] = name
            if mac:
                taken.macs[mac] = name
        return taken


def network_subnet(session: Session, network: str) -> ipaddress.IPv4Network | None:
    """A network's subnet from the applied spec, or None when no spec has been applied."""
    row = session.get(Network, network)
    return ipaddress.IPv4Network(row.subnet) if row is not None else None


def subnet_for(
    session: Session,
    network: str,
    ip: ipaddress.IPv4Address,
    netmask: ipaddress.IPv4Address | None,
    *,
    field: str,
) -> ipaddress.IPv4Network:
    """The subnet new addresses must fall in: the spec's network when one was applied, else IP + netmask
    (``field`` holds the IP, the request's ``netmask`` field the netmask)."""
    known = network_subnet(session, network)
    if known is not None:
        if netmask is not None and netmask != known.netmask:
            raise FieldError(
                "netmask",
                f"{netmask} does not match the {network} network {known} of the applied spec; "
                f"use {known.netmask} (or leave {ref('netmask')} out)",
            )
        return known
    if netmask is None:
        needs = (
            f"{ref(field)} needs {ref('netmask')} (e.g. 255.255.255.0): no spec with a {network} network was applied"
        )
        raise FieldError("netmask", needs, sep=None)
    return ipaddress.IPv4Network(f"{ip}/{netmask}", strict=False)


def usable(subnet: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    """The first and last host address of a subnet (a /31 or /32 has no network or broadcast address)."""
    if subnet.prefixlen >= 31:
        return subnet.network_address, subnet.broadcast_address
    return subnet.network_address + 1, subnet.broadcast_address - 1


def check_in_subnet(field: str, ip: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> None:
    first, last = usable(subnet)
    if not first <= ip <= last:
        where = "outside" if ip not in subnet else "not a host address of"
        raise FieldError(field, f"{ip} is {where} the subnet {subnet}; use an address from {first} to {last}")


def check_range(field: str, start: ipaddress.IPv4Address, count: int, subnet: ipaddress.IPv4Network) -> None:
    """``count`` consecutive addresses from ``start`` must all be usable host addresses of ``subnet``."""
    check_in_subnet(field, start, subnet)
    _first, last = usable(subnet)
    end = int(start) + count - 1
    if end > int(last):
        fit = int(last) - int(start) + 1
        raise FieldError(
            field,
            f"{count} nodes from {ref(field)} {start} need addresses up to "
            f"{ipaddress.IPv4Address(min(end, 2**32 - 1))}, past the last usable address {last} of {subnet}; "
            f"at most {fit} fit from {start} (use a lower start IP, fewer nodes, or a larger subnet)",
            sep=None,
        )
