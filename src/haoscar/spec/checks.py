"""Checks across fields and sections of a spec.

They run on whatever parts of the spec passed the single-field checks, so that a spec with an IP typo in one head
still gets its client ranges and duplicates checked in the same run.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from haoscar.errors import UserError
from haoscar.spec.models import HA, ClientGroup, HeadNode, Image, Lab, Network
from haoscar.spec.nodes import group_names
from haoscar.spec.yamlsrc import Path_, dotted

Finding = tuple[Path_, str]
IP = ipaddress.IPv4Address


@dataclass
class Parts:
    """The sections of a spec that are individually valid (None / absent where they are not)."""

    networks: dict[str, Network] = field(default_factory=dict)
    heads: dict[str, HeadNode] = field(default_factory=dict)
    images: list[tuple[int, Image]] = field(default_factory=list)
    clients: list[tuple[int, ClientGroup]] = field(default_factory=list)
    ha: HA | None = None
    lab: Lab | None = None
    image_names_known: bool = True


def _usable(net: ipaddress.IPv4Network, ip: IP) -> bool:
    if ip not in net:
        return False
    if net.prefixlen >= 31:
        return True
    return ip not in (net.network_address, net.broadcast_address)


def _where(net: ipaddress.IPv4Network) -> str:
    if net.prefixlen >= 31:
        return f"{net[0]}-{net[-1]}"
    return f"{net[1]}-{net[-2]}"


def _in_subnet(path: Path_, ip: IP, net: Network | None, label: str) -> Iterator[Finding]:
    if net is None:
        return
    if ip not in net.subnet:
        yield path, f"{ip} is outside the {label} subnet {net.subnet}; use an address in {_where(net.subnet)}"
    elif not _usable(net.subnet, ip):
        kind = "network" if ip == net.subnet.network_address else "broadcast"
        yield path, f"{ip} is the {kind} address of {net.subnet}; use an address in {_where(net.subnet)}"


def check_networks(parts: Parts) -> Iterator[Finding]:
    for name, net in parts.networks.items():
        if net.gateway is not None:
            yield from _in_subnet(("networks", name, "gateway"), net.gateway, net, name)
    names = list(parts.networks)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = parts.networks[first].subnet, parts.networks[second].subnet
            if a.overlaps(b):
                yield (
                    ("networks", second, "subnet"),
                    (f"{b} overlaps the {first} subnet {a}; each network needs its own subnet"),
                )


def _mask_matches(path: Path_, netmask: IP, net: Network | None, label: str) -> Iterator[Finding]:
    if net is not None and netmask != net.subnet.netmask:
        yield (
            path,
            (f"netmask {netmask} does not match the {label} subnet {net.subnet}; it would be {net.subnet.netmask}"),
        )


def check_heads(parts: Parts) -> Iterator[Finding]:
    private, public = parts.networks.get("private"), parts.networks.get("public")
    heartbeat = parts.networks.get("heartbeat")
    for role, head in parts.heads.items():
        base: Path_ = ("heads", role)
        yield from _in_subnet((*base, "private_ip"), head.private_ip, private, "private")
        yield from _in_subnet((*base, "public_ip"), head.public_ip, public, "public")
        yield from _in_subnet((*base, "alias_ip"), head.alias_ip, public, "public")
        # The walkthrough's Add Standby Server dialog pairs Subnet Mask and Default Gateway with the local IP.
        yield from _mask_matches((*base, "netmask"), head.netmask, private, "private")
        gateway = head.gateway
        if (
            gateway is not None
            and private is not None
            and public is not None
            and not any(_usable(net.subnet, gateway) for net in (private, public))
        ):
            yield (
                (*base, "gateway"),
                (
                    f"{gateway} is in neither the private subnet {private.subnet} nor the public subnet "
                    f"{public.subnet}; a default gateway must be on a network the head is on"
                ),
            )
        if head.heartbeat_ip is not None:
            if "heartbeat" not in parts.networks and heartbeat is None:
                yield (
                    (*base, "heartbeat_ip"),
                    "a heartbeat_ip needs networks.heartbeat; add it or drop this key",
                )
            yield from _in_subnet((*base, "heartbeat_ip"), head.heartbeat_ip, heartbeat, "heartbeat")
        used: dict[str, str] = {}
        names = [("private_interface", head.private_interface), ("public_interface", head.public_interface)]
        if head.heartbeat_ip is not None:
            names.append(("heartbeat_interface", head.heartbeat_interface))
        for key, ifname in names:
            if ifname in used:
                yield (
                    (*base, key),
                    f"interface {ifname} is already the {used[ifname]}; each network needs its own",
                )
            used[ifname] = key.replace("_interface", " interface")
    if "primary" in parts.heads and "standby" in parts.heads:
        primary, standby = parts.heads["primary"], parts.heads["standby"]
        if primary.alias_ip != standby.alias_ip:
            yield (
                ("heads", "standby", "alias_ip"),
                (
                    f"{standby.alias_ip} differs from the primary's alias IP {primary.alias_ip}; the alias IP follows "
                    "the active head, so both heads name the same one"
                ),
            )
        host_ips = {
            ip for head in (primary, standby) for ip in (head.private_ip, head.public_ip, head.heartbeat_ip) if ip
        }
        if primary.alias_ip in host_ips:
            yield (
                ("heads", "primary", "alias_ip"),
                (f"{primary.alias_ip} is also a head's own address; the alias IP must be one no host uses"),
            )


def check_images(parts: Parts) -> Iterator[Finding]:
    seen: set[str] = set()
    for index, image in parts.images:
        if image.name in seen:
            yield (
                ("images", index, "name"),
                f"image {image.name!r} is defined twice; give each image its own name",
            )
        seen.add(image.name)
    known = {image.name for _, image in parts.images}
    if not parts.image_names_known:
        return
    for index, group in parts.clients:
        if group.image not in known:
            choices = ", ".join(sorted(known)) or "none defined yet"
            yield (
                ("clients", index, "image"),
                (f"image {group.image!r} is not defined under images (defined: {choices})"),
            )
    for role, head in parts.heads.items():
        if head.image is not None and head.image not in known:
            choices = ", ".join(sorted(known)) or "none defined yet"
            yield (
                ("heads", role, "image"),
                f"image {head.image!r} is not defined under images (defined: {choices})",
            )


def check_clients(parts: Parts) -> Iterator[Finding]:
    private = parts.networks.get("private")
    head_ips: dict[IP, str] = {}
    for role, head in parts.heads.items():
        for key in ("private_ip", "public_ip", "alias_ip", "heartbeat_ip"):
            ip = getattr(head, key)
            if ip is not None:
                head_ips[ip] = f"heads.{role}.{key}"
    if private is not None and private.subnet and private.gateway is not None:
        head_ips.setdefault(private.gateway, "networks.private.gateway")
    for index, group in parts.clients:
        base: Path_ = ("clients", index)
        try:
            names = group_names(group)
        except UserError as exc:
            yield (*base, "nodeset"), exc.message
            continue
        yield from _mask_matches((*base, "netmask"), group.netmask, private, "private")
        if group.gateway is not None:
            yield from _in_subnet((*base, "gateway"), group.gateway, private, "private")
        for node in group.macs:
            if node not in names:
                yield (
                    (*base, "macs", node),
                    f"{node!r} is not a client of this group (it has {names[0]}..{names[-1]})",
                )
        first = group.start_ip
        last_int = int(first) + len(names) - 1
        if private is None:
            continue
        yield from _in_subnet((*base, "start_ip"), first, private, "private")
        if first not in private.subnet:
            continue
        highest = private.subnet[-2] if private.subnet.prefixlen < 31 else private.subnet[-1]
        if last_int > int(highest):
            room = int(highest) - int(first) + 1
            yield (
                (*base, "count" if group.nodeset is None else "nodeset"),
                (
                    f"{len(names)} clients from {first} run past the subnet {private.subnet}: the last would be "
                    f"{IP(min(last_int, 0xFFFFFFFF))}, beyond {highest}; at most {room} fit from this start_ip"
                ),
            )
        for ip, owner in head_ips.items():
            if int(first) <= int(ip) <= last_int:
                yield (
                    (*base, "start_ip"),
                    (
                        f"the range {first}-{IP(min(last_int, 0xFFFFFFFF))} includes {ip}, which is {owner}; "
                        "move start_ip or reduce the count"
                    ),
                )


def _all_hosts(parts: Parts) -> Iterator[tuple[Path_, str, list[IP], list[str]]]:
    """Every host of the cluster with the path that defines it, its name, addresses and MACs."""
    for role, head in parts.heads.items():
        ips = [ip for ip in (head.private_ip, head.public_ip, head.heartbeat_ip) if ip is not None]
        macs = [head.private_mac] if head.private_mac else []
        yield ("heads", role), head.hostname, ips, macs
    for index, group in parts.clients:
        try:
            names = group_names(group)
        except UserError:
            continue
        for offset, name in enumerate(names):
            mac = group.macs.get(name)
            yield ("clients", index), name, [group.start_ip + offset], [mac] if mac else []
    if parts.ha is not None and parts.ha.witness is not None:
        witness = parts.ha.witness
        yield ("ha", "witness"), witness.hostname, list(witness.addresses), []
    if parts.lab is not None and parts.lab.client is not None:
        yield ("lab", "client"), parts.lab.client.hostname, [parts.lab.client.ip], []


def check_duplicates(parts: Parts) -> Iterator[Finding]:
    names: dict[str, str] = {}
    ips: dict[IP, str] = {}
    macs: dict[str, str] = {}
    for path, name, host_ips, host_macs in _all_hosts(parts):
        where = dotted(path)
        if name in names:
            yield path, f"host name {name!r} is used twice (also by {names[name]}); host names must be unique"
        else:
            names[name] = where
        for ip in host_ips:
            if ip in ips and ips[ip] != f"{where} ({name})":
                yield path, f"{ip} of {name} is already used by {ips[ip]}; every address must be unique"
            ips.setdefault(ip, f"{where} ({name})")
        for mac in host_macs:
            if mac in macs:
                yield path, f"MAC {mac} of {name} is already used by {macs[mac]}; every NIC has its own MAC"
            macs.setdefault(mac, f"{name}")


def check_ha(parts: Parts) -> Iterator[Finding]:
    ha = parts.ha
    if ha is None:
        return
    if ha.dead_time < 3 * ha.heartbeat_interval - 1e-9:  # 3 x 0.2 is 0.6000000000000001 in floats
        yield (
            ("ha", "dead_time"),
            (
                f"{ha.dead_time:g} s is less than 3 x heartbeat_interval ({ha.heartbeat_interval:g} s); "
                f"use at least {3 * ha.heartbeat_interval:g} s so one lost packet is not a death"
            ),
        )
    if ha.witness is not None:
        for i, ip in enumerate(ha.witness.addresses):
            if parts.networks and not any(ip in net.subnet for net in parts.networks.values()):
                subnets = ", ".join(str(net.subnet) for net in parts.networks.values())
                yield (
                    ("ha", "witness", "addresses", i),
                    (f"{ip} is on none of the cluster's networks ({subnets}); the heads must reach the witness"),
                )
    seen: set[str] = set()
    for i, service in enumerate(ha.services):
        if service.name in seen:
            yield ("ha", "services", i, "name"), f"service {service.name!r} is defined twice"
        seen.add(service.name)
    if ha.fencing.method == "fence-agents" and not ha.fencing.agent:
        yield ("ha", "fencing", "agent"), "method fence-agents needs an agent, e.g. fence_ipmilan"
    for i, rep in enumerate(ha.replicate):
        if not rep.path.startswith("/"):
            yield ("ha", "replicate", i, "path"), f"{rep.path!r} is not an absolute path; write e.g. /home"


def check_lab(parts: Parts) -> Iterator[Finding]:
    if parts.lab is not None and parts.lab.client is not None:
        yield from _in_subnet(("lab", "client", "ip"), parts.lab.client.ip, parts.networks.get("public"), "public")


ALL_CHECKS = (check_networks, check_heads, check_images, check_clients, check_duplicates, check_ha, check_lab)


def run_checks(parts: Parts) -> list[Finding]:
    findings: list[Finding] = []
    for check in ALL_CHECKS:
        findings.extend(check(parts))
    return findings
