"""Checks of the private alias IP and the public health targets (issue 11), beside ``spec.checks``.

The private alias is what compute nodes use to reach the head: DHCP's next-server, the iPXE and boot-server URLs,
the installer's head address, the scheduler. It moves with the active head like the public alias, so it is the same
on both heads and no host may own it.
"""

from __future__ import annotations

from collections.abc import Iterator

from haoscar.spec.checks import IP, Finding, Parts, _hosts, _in_subnet
from haoscar.spec.yamlsrc import Path_


def _owners(parts: Parts) -> dict[IP, str]:
    """Every address some host, gateway or the public alias already answers for."""
    owners = {ip: f"{host.where} ({host.name})" for host in _hosts(parts) for _, ip in host.ips}
    for name, net in parts.networks.items():
        if net.gateway is not None:
            owners.setdefault(net.gateway, f"the {name} network's gateway")
    primary = parts.heads.get("primary")
    if primary is not None and primary.alias_ip is not None:
        owners.setdefault(primary.alias_ip, "the public alias IP (heads.primary.alias_ip)")
    return owners


def check_private_alias(parts: Parts) -> Iterator[Finding]:
    """One private alias, on both heads or on neither, inside the private subnet, that no host uses."""
    primary, standby = parts.heads.get("primary"), parts.heads.get("standby")
    if primary is None or standby is None:
        return
    if ("heads", "primary", "private_alias_ip") in parts.bad or ("heads", "standby", "private_alias_ip") in parts.bad:
        return
    mine, theirs = primary.private_alias_ip, standby.private_alias_ip
    if mine is None and theirs is None:
        return
    if mine is None or theirs is None:
        given, missing = ("primary", "standby") if mine is not None else ("standby", "primary")
        yield (
            ("heads", missing),
            f"heads.{given} has a private_alias_ip ({mine or theirs}) and this head has none; the private alias "
            "follows the active head, so give both heads the same one (or drop it from both)",
        )
        return
    if mine != theirs:
        yield (
            ("heads", "standby", "private_alias_ip"),
            f"{theirs} differs from the primary's private alias IP {mine}; the private alias follows the active "
            "head, so both heads name the same one",
        )
    path: Path_ = ("heads", "primary", "private_alias_ip")
    yield from _in_subnet(path, mine, parts.networks.get("private"), "private")
    owners = _owners(parts)
    if mine in owners:
        yield (
            path,
            f"{mine} is also the address of {owners[mine]}; the private alias IP must be a free address of the "
            "private subnet that no node or head uses",
        )


def check_ping_targets(parts: Parts) -> Iterator[Finding]:
    """A ping target is somebody else: never a head's own address or an alias (they move with the role)."""
    ha = parts.ha
    if ha is None or ("ha", "ping_targets") in parts.bad:
        return
    own: dict[IP, str] = {}
    for role, head in parts.heads.items():
        for key in ("private_ip", "public_ip", "heartbeat_ip", "alias_ip", "private_alias_ip"):
            ip = getattr(head, key, None)
            if ip is not None:
                own.setdefault(ip, f"heads.{role}.{key}")
    seen: set[IP] = set()
    for i, target in enumerate(ha.ping_targets or []):
        if target in own:
            yield (
                ("ha", "ping_targets", i),
                f"{target} is {own[target]}; a ping target is a host outside the heads, e.g. the public gateway",
            )
        elif target in seen:
            yield ("ha", "ping_targets", i), f"{target} is listed twice; list each target once"
        seen.add(target)


def run_alias_checks(parts: Parts) -> list[Finding]:
    return [*check_private_alias(parts), *check_ping_targets(parts)]
