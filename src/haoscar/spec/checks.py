"""Checks across fields and sections of a spec.

They run on whatever parts of the spec passed the single-field checks, so that a spec with an IP typo in one head
still gets its client ranges and duplicates checked in the same run. A field that failed its own check is None in
the partial models handed to these checks (see ``loader._partial``), so every check here tolerates None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field

from haoscar.errors import UserError
from haoscar.spec.fencing_checks import check_bmcs, check_fencing
from haoscar.spec.models import HA, ClientGroup, HeadNode, Image, Lab, Network
from haoscar.spec.nfs_models import NFS
from haoscar.spec.nodes import group_names
from haoscar.spec.types import parse_hostname
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
    nfs: NFS | None = None
    image_names_known: bool = True
    bad: set[Path_] = field(default_factory=set)
    """Paths of fields that failed their own check (already reported); cross checks on them would only guess."""


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


def _in_subnet(path: Path_, ip: IP | None, net: Network | None, label: str) -> Iterator[Finding]:
    if net is None or ip is None:
        return
    if ip not in net.subnet:
        yield path, f"{ip} is outside the {label} subnet {net.subnet}; use an address in {_where(net.subnet)}"
    elif not _usable(net.subnet, ip):
        kind = "network" if ip == net.subnet.network_address else "broadcast"
        yield path, f"{ip} is the {kind} address of {net.subnet}; use an address in {_where(net.subnet)}"


def check_networks(parts: Parts) -> Iterator[Finding]:
    for name, net in parts.networks.items():
        yield from _in_subnet(("networks", name, "gateway"), net.gateway, net, name)
    names = list(parts.networks)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            a, b = parts.networks[first].subnet, parts.networks[second].subnet
            if a.overlaps(b):
                yield (
                    ("networks", second, "subnet"),
                    f"{b} overlaps the {first} subnet {a}; each network needs its own subnet",
                )


def _mask_matches(path: Path_, netmask: IP | None, net: Network | None, label: str) -> Iterator[Finding]:
    if net is not None and netmask is not None and netmask != net.subnet.netmask:
        yield (
            path,
            f"netmask {netmask} does not match the {label} subnet {net.subnet}; it would be {net.subnet.netmask}",
        )


def _head_interfaces(base: Path_, head: HeadNode) -> Iterator[Finding]:
    used: dict[str, str] = {}
    keys = ["private_interface", "public_interface"]
    if head.heartbeat_ip is not None:
        keys.append("heartbeat_interface")
    for key in keys:
        ifname = getattr(head, key)
        if ifname is None:
            continue
        if ifname in used:
            yield (*base, key), f"interface {ifname} is already the {used[ifname]}; each network needs its own"
        used.setdefault(ifname, key.replace("_interface", " interface"))


def _alias_ip(parts: Parts) -> Iterator[Finding]:
    """One alias IP, shared by both heads, that no host owns: it moves to whichever head is active."""
    primary, standby = parts.heads.get("primary"), parts.heads.get("standby")
    if primary is None or primary.alias_ip is None:
        return
    if standby is not None and standby.alias_ip is not None and standby.alias_ip != primary.alias_ip:
        yield (
            ("heads", "standby", "alias_ip"),
            f"{standby.alias_ip} differs from the primary's alias IP {primary.alias_ip}; the alias IP follows "
            "the active head, so both heads name the same one",
        )
    owners = {ip: f"{host.where} ({host.name})" for host in _hosts(parts) for _, ip in host.ips}
    for name, net in parts.networks.items():
        if net.gateway is not None:
            owners.setdefault(net.gateway, f"the {name} network's gateway")
    if primary.alias_ip in owners:
        yield (
            ("heads", "primary", "alias_ip"),
            f"{primary.alias_ip} is also the address of {owners[primary.alias_ip]}; the alias IP must be a "
            "free address of the public subnet that no host uses",
        )


def check_heads(parts: Parts) -> Iterator[Finding]:
    private, public = parts.networks.get("private"), parts.networks.get("public")
    heartbeat = parts.networks.get("heartbeat")
    heartbeat_unknown = ("networks", "heartbeat") in parts.bad
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
                f"{gateway} is in neither the private subnet {private.subnet} nor the public subnet "
                f"{public.subnet}; a default gateway must be on a network the head is on",
            )
        if head.heartbeat_ip is not None:
            if heartbeat is None and not heartbeat_unknown:
                yield (*base, "heartbeat_ip"), "a heartbeat_ip needs networks.heartbeat; add it or drop this key"
            yield from _in_subnet((*base, "heartbeat_ip"), head.heartbeat_ip, heartbeat, "heartbeat")
        elif heartbeat is not None and (*base, "heartbeat_ip") not in parts.bad:
            yield (
                base,
                f"networks.heartbeat is defined, so this head needs a heartbeat_ip in {heartbeat.subnet}; "
                "add one or drop networks.heartbeat",
            )
        yield from _head_interfaces(base, head)
    yield from _alias_ip(parts)


def check_images(parts: Parts) -> Iterator[Finding]:
    seen: set[str] = set()
    for index, image in parts.images:
        if image.name in seen:
            yield ("images", index, "name"), f"image {image.name!r} is defined twice; give each image its own name"
        seen.add(image.name)
    if not parts.image_names_known:
        return
    known = ", ".join(sorted(seen)) or "none defined yet"
    for index, group in parts.clients:
        if group.image is not None and group.image not in seen:
            yield (
                ("clients", index, "image"),
                f"image {group.image!r} is not defined under images (defined: {known})",
            )
    for role, head in parts.heads.items():
        if head.image is not None and head.image not in seen:
            yield (("heads", role, "image"), f"image {head.image!r} is not defined under images (defined: {known})")


def _names_path(index: int, group: ClientGroup) -> Path_:
    return ("clients", index, "nodeset" if group.nodeset is not None else "base_name")


def _names_of(group: ClientGroup) -> tuple[list[str] | None, str | None]:
    """The client names of a (partial) group and, when they cannot be made, why; (None, None) when a field
    they come from already failed its own check."""
    if group.nodeset is not None and (group.base_name is not None or group.count is not None):
        return None, None
    if group.nodeset is None and None in (group.base_name, group.count, group.start_number, group.padding):
        return None, None
    try:
        names = group_names(group)
    except UserError as exc:
        return None, exc.message
    for name in names:
        try:
            parse_hostname(name)
        except ValueError as exc:
            return None, f"this group would name a client {name!r}, which is not a valid host name ({exc})"
    return names, None


def _reserved(parts: Parts) -> dict[IP, str]:
    """Addresses in the private network that no client may take: the heads' and the gateway."""
    reserved: dict[IP, str] = {}
    for role, head in parts.heads.items():
        for key in ("private_ip", "public_ip", "alias_ip", "heartbeat_ip"):
            ip = getattr(head, key)
            if ip is not None:
                reserved.setdefault(ip, f"heads.{role}.{key}")
    private = parts.networks.get("private")
    if private is not None and private.gateway is not None:
        reserved.setdefault(private.gateway, "networks.private.gateway")
    return reserved


def check_clients(parts: Parts) -> Iterator[Finding]:
    private = parts.networks.get("private")
    reserved = _reserved(parts)
    labels: dict[str, int] = {}
    for index, group in parts.clients:
        base: Path_ = ("clients", index)
        if group.name is not None:
            if group.name in labels:
                yield (
                    (*base, "name"),
                    f"group name {group.name!r} is already used by clients[{labels[group.name]}]; "
                    "give each group its own name",
                )
            labels.setdefault(group.name, index)
        names, problem = _names_of(group)
        if problem is not None:
            yield _names_path(index, group), problem
        yield from _mask_matches((*base, "netmask"), group.netmask, private, "private")
        yield from _in_subnet((*base, "gateway"), group.gateway, private, "private")
        if names is None:
            continue
        known = set(names)
        for node in group.macs or {}:
            if node not in known:
                yield (
                    (*base, "macs", node),
                    f"{node!r} is not a client of this group (it has {names[0]} .. {names[-1]}); use one of its names",
                )
        first = group.start_ip
        if private is None or first is None:
            continue
        yield from _in_subnet((*base, "start_ip"), first, private, "private")
        if not _usable(private.subnet, first):
            continue
        last_int = int(first) + len(names) - 1
        last = IP(min(last_int, 0xFFFFFFFF))
        highest = private.subnet[-2] if private.subnet.prefixlen < 31 else private.subnet[-1]
        if last_int > int(highest):
            room = int(highest) - int(first) + 1
            yield (
                (*base, "count" if group.nodeset is None else "nodeset"),
                f"{len(names)} clients from {first} run past the subnet {private.subnet}: the last would be "
                f"{last}, beyond {highest}; at most {room} fit from this start_ip",
            )
        taken = [f"{ip} ({owner})" for ip, owner in sorted(reserved.items()) if int(first) <= int(ip) <= last_int]
        if taken:
            yield (
                (*base, "start_ip"),
                f"the range {first}-{last} includes {', '.join(taken)}; move start_ip past them or reduce the count",
            )


@dataclass
class _Host:
    where: str
    name: str
    name_path: Path_
    ips: list[tuple[Path_, IP]]
    macs: list[tuple[Path_, str]]
    is_client: bool = False


def _hosts(parts: Parts) -> Iterator[_Host]:
    """Every host of the cluster with the paths that define its name, addresses and MACs."""
    for role, head in parts.heads.items():
        base: Path_ = ("heads", role)
        ips = [
            ((*base, key), ip)
            for key in ("private_ip", "public_ip", "heartbeat_ip")
            if (ip := getattr(head, key)) is not None
        ]
        macs = [((*base, "private_mac"), head.private_mac)] if head.private_mac else []
        if head.hostname is not None:
            yield _Host(dotted(base), head.hostname, (*base, "hostname"), ips, macs)
    for index, group in parts.clients:
        names, _ = _names_of(group)
        if names is None:
            continue
        base = ("clients", index)
        start = group.start_ip
        for offset, name in enumerate(names):
            ips = (
                [((*base, "start_ip"), start + offset)]
                if start is not None and int(start) + offset <= 0xFFFFFFFF
                else []
            )
            mac = (group.macs or {}).get(name)
            macs = [((*base, "macs", name), mac)] if mac else []
            yield _Host(dotted(base), name, _names_path(index, group), ips, macs, is_client=True)
    if parts.ha is not None and parts.ha.witness is not None:
        witness = parts.ha.witness
        base = ("ha", "witness")
        ips = [((*base, "addresses", i), ip) for i, ip in enumerate(witness.addresses or [])]
        if witness.hostname is not None:
            yield _Host("ha.witness", witness.hostname, (*base, "hostname"), ips, [])
    if parts.lab is not None and parts.lab.client is not None and parts.lab.client.ip is not None:
        client = parts.lab.client
        yield _Host(
            "lab.client", client.hostname, ("lab", "client", "hostname"), [(("lab", "client", "ip"), client.ip)], []
        )


class _Collisions:
    """Collisions grouped by the field that causes them, so a client group that overlaps another by 200
    addresses gives one line, not 200."""

    def __init__(self) -> None:
        self.found: dict[tuple[Path_, str], list[str]] = {}

    def add(self, path: Path_, kind: str, text: str) -> None:
        self.found.setdefault((path, kind), []).append(text)

    def findings(self) -> Iterator[Finding]:
        rules = {
            "name": "host names must be unique",
            "ip": "every address must be unique",
            "mac": "every NIC has its own MAC",
        }
        for (path, kind), texts in self.found.items():
            more = f" (and {len(texts) - 1} more like it)" if len(texts) > 1 else ""
            yield path, f"{texts[0]}{more}; {rules[kind]}"


def check_duplicates(parts: Parts) -> Iterator[Finding]:
    names: dict[str, str] = {}
    ips: dict[IP, tuple[str, bool]] = {}
    macs: dict[str, str] = {}
    reserved = _reserved(parts)
    found = _Collisions()
    for host in _hosts(parts):
        if host.name in names:
            found.add(host.name_path, "name", f"host name {host.name!r} is already used by {names[host.name]}")
        names.setdefault(host.name, f"{host.where} ({host.name})" if host.is_client else host.where)
        for path, ip in host.ips:
            if ip in ips:
                owner, owner_is_client = ips[ip]
                # A client range over a head address is reported by check_clients, with the range.
                if not (host.is_client and not owner_is_client and ip in reserved):
                    found.add(path, "ip", f"{ip} of {host.name} is already used by {owner}")
            ips.setdefault(ip, (f"{host.where} ({host.name})", host.is_client))
        for path, mac in host.macs:
            if mac in macs:
                found.add(path, "mac", f"MAC {mac} of {host.name} is already used by {macs[mac]}")
            macs.setdefault(mac, f"{host.where} ({host.name})")
    yield from found.findings()


def check_ha(parts: Parts) -> Iterator[Finding]:
    ha = parts.ha
    if ha is None:
        return
    timing_known = not parts.bad & {("ha", "heartbeat_interval"), ("ha", "dead_time")}
    # 3 x 0.2 is 0.6000000000000001 in floats, hence the tolerance.
    if timing_known and ha.dead_time < 3 * ha.heartbeat_interval - 1e-9:
        yield (
            ("ha", "dead_time"),
            (
                f"{ha.dead_time:g} s is less than 3 x heartbeat_interval ({ha.heartbeat_interval:g} s); "
                f"use at least {3 * ha.heartbeat_interval:g} s so one lost packet is not a death"
            ),
        )
    if timing_known and ("ha", "lease_s") not in parts.bad and ha.lease_s < 2 * ha.heartbeat_interval - 1e-9:
        yield (
            ("ha", "lease_s"),
            (
                f"{ha.lease_s:g} s is less than 2 x heartbeat_interval ({ha.heartbeat_interval:g} s); the active head "
                f"renews the lease every heartbeat, so use at least {2 * ha.heartbeat_interval:g} s"
            ),
        )
    if timing_known and ("ha", "initdead_s") not in parts.bad and ha.initdead_s < ha.dead_time - 1e-9:
        yield (
            ("ha", "initdead_s"),
            (
                f"{ha.initdead_s:g} s is less than dead_time ({ha.dead_time:g} s); a head that starts must wait at "
                f"least one dead time before it calls a silent peer dead, so use at least {ha.dead_time:g} s"
            ),
        )
    if ha.witness is not None:
        for i, ip in enumerate(ha.witness.addresses or []):
            networks_known = not any(("networks", name) in parts.bad for name in ("private", "public", "heartbeat"))
            if networks_known and parts.networks and not any(ip in net.subnet for net in parts.networks.values()):
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
    yield from check_replication(ha)


def check_replication(ha: HA) -> Iterator[Finding]:
    """Replicate paths are absolute, normalised and inside ``ha.replicate_roots`` (the standby writes them as root);
    the replication ports must not clash with the daemon's. Whether a path exists is checked on the head itself
    when replication starts (the spec may be validated elsewhere)."""
    roots = [r.rstrip("/") or "/" for r in ha.replicate_roots]
    for i, root in enumerate(ha.replicate_roots):
        if not root.startswith("/") or "/../" in f"{root}/" or "/./" in f"{root}/":
            yield ("ha", "replicate_roots", i), f"{root!r} is not a normalised absolute path; write e.g. /home"
    for i, rep in enumerate(ha.replicate):
        if not rep.path.startswith("/"):
            yield ("ha", "replicate", i, "path"), f"{rep.path!r} is not an absolute path; write e.g. /home"
            continue
        if "/../" in f"{rep.path}/" or "/./" in f"{rep.path}/" or "//" in rep.path:
            yield ("ha", "replicate", i, "path"), f"{rep.path!r} is not normalised; write it without . , .. or //"
            continue
        path = rep.path.rstrip("/") or "/"
        if not any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots):
            yield (
                ("ha", "replicate", i, "path"),
                f"{rep.path} is outside the allowed roots ({', '.join(roots)}); "
                "move it under one of them or add its tree to ha.replicate_roots",
            )
    used = {ha.port: "ha.port", ha.api_port: "ha.api_port"}
    status_port = getattr(ha, "status_port", None)  # the HA engineers' read-only status endpoint
    if isinstance(status_port, int):
        used[status_port] = "ha.status_port"
    if ha.witness is not None:
        used[ha.witness.port] = "ha.witness.port"
    for name in ("replication_port", "replication_rsync_port"):
        port = getattr(ha, name)
        if port in used:
            yield ("ha", name), f"port {port} is already {used[port]}; give replication a port of its own"
        used[port] = f"ha.{name}"


def check_lab(parts: Parts) -> Iterator[Finding]:
    if parts.lab is not None and parts.lab.client is not None:
        yield from _in_subnet(("lab", "client", "ip"), parts.lab.client.ip, parts.networks.get("public"), "public")


def check_ha_resources(parts: Parts) -> Iterator[Finding]:
    """The head's resource group (docs/ha-resources.md): one DHCP server, one status API, ports that do not clash."""
    ha = parts.ha
    if ha is None:
        return
    for kind in ("dnsmasq", "bootserver", "status-api", "slurmctld"):
        indexes = [i for i, service in enumerate(ha.services) if service.kind == kind]
        for i in indexes[1:]:
            yield ("ha", "services", i, "kind"), f"a second {kind} service; a head runs one (the first is {indexes[0]})"
    taken = {ha.port: "ha.port (heartbeats)"}
    if ha.witness is not None:
        taken[ha.witness.port] = "ha.witness.port"
    api_ports: list[tuple[Path_, int]] = [(("ha", "api_port"), ha.api_port)]
    api_ports += [
        (("ha", "services", i, "port"), s.port) for i, s in enumerate(ha.services) if s.kind == "status-api" and s.port
    ]
    for path, port in api_ports:
        if port in taken:
            yield path, f"port {port} is already {taken[port]}; the status API needs a port of its own, e.g. 7406"


ALL_CHECKS = (
    check_networks,
    check_heads,
    check_images,
    check_clients,
    check_duplicates,
    check_ha,
    check_ha_resources,
    check_lab,
    check_fencing,
    check_bmcs,
)


def run_checks(parts: Parts) -> list[Finding]:
    findings: list[Finding] = []
    for check in ALL_CHECKS:
        findings.extend(check(parts))
    return findings
