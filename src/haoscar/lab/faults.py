"""Network faults as nftables rules inside each host's network namespace, in one table of the lab's own.

The table is ``netdev haoscar_lab`` with an ingress and an egress chain per affected interface, so rules act on
frames of exactly that interface. A partition drops frames to and from the other host's MAC addresses (so it also
cuts addresses a daemon adds at run time, like an alias IP, and ARP); loss drops a random share of frames with
``numgen random`` (this kernel has no netem). The whole table is rewritten in one nft transaction from the lab's
recorded faults, so ``heal`` removes exactly what was added and nothing else of the host's firewall is touched.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field

from haoscar.errors import UserError
from haoscar.lab.layout import LabLayout
from haoscar.lab.names import NETNS_DIR, NFT_TABLE


@dataclass
class InterfaceRules:
    blocked_macs: set[str] = field(default_factory=set)
    loss_percent: int = 0


def host_rules(layout: LabLayout, host: str) -> dict[str, InterfaceRules]:
    """Interface name -> what to drop on it, for one host, from the lab's partitions and losses."""
    rules: dict[str, InterfaceRules] = defaultdict(InterfaceRules)
    me = layout.host(host)
    for part in layout.partitions:
        if host not in (part.a, part.b):
            continue
        other = layout.host(part.b if host == part.a else part.a)
        for iface in me.interfaces:
            if part.network is not None and iface.network != part.network:
                continue
            macs = {o.mac for o in other.interfaces if o.network == iface.network and o.mac}
            if macs:
                rules[iface.name].blocked_macs |= macs
    for iface_name, percent in layout.losses.get(host, {}).items():
        if percent > 0:
            rules[iface_name].loss_percent = percent
    return dict(rules)


def render(rules: dict[str, InterfaceRules]) -> str:
    """An nft script that replaces the lab's table (and only it) with ``rules``."""
    lines = [f"table netdev {NFT_TABLE}", f"delete table netdev {NFT_TABLE}"]
    if not rules:
        return "\n".join(lines) + "\n"
    lines.append(f"table netdev {NFT_TABLE} {{")
    for position, (iface, rule) in enumerate(sorted(rules.items())):
        for hook, direction in (("ingress", "saddr"), ("egress", "daddr")):
            lines.append(f"  chain {hook}{position} {{")
            lines.append(f'    type filter hook {hook} device "{iface}" priority -100; policy accept;')
            if rule.blocked_macs:
                lines.append(f"    ether {direction} {{ {', '.join(sorted(rule.blocked_macs))} }} drop")
            if rule.loss_percent >= 100:
                lines.append("    drop")
            elif rule.loss_percent > 0:
                lines.append(f"    numgen random mod 100 < {rule.loss_percent} drop")
            lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def apply(netns: str, script: str) -> None:
    result = subprocess.run(
        ["nsenter", f"--net={NETNS_DIR}/{netns}", "nft", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"nft in {netns} failed: {result.stderr.strip()}\n{script}")


def check_percent(percent: int) -> int:
    if not 0 <= percent <= 100:
        raise UserError(f"loss percent {percent} is out of range; give 0-100 (0 removes the loss)")
    return percent
