"""Checks of ``ha.fencing`` and ``lab.bmcs`` across sections (the heads' names, the networks).

A fence password never sits in the spec: the spec is copied to both heads, shown by ``spec validate``, kept in
images and backups, and fence agents take the password on stdin anyway. It lives in a file of its own (mode 0600)
named by ``options.password_file`` (haoscar reads it and hands it to the agent), or the agent's own
``password_script``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Protocol

from haoscar.spec.models import HA, HeadNode, Lab, Network
from haoscar.spec.yamlsrc import Path_

INLINE_PASSWORD_KEYS = ("password", "passwd")


class Parts(Protocol):
    """What these checks read of ``spec.checks.Parts`` (the sections that passed their own checks)."""

    @property
    def networks(self) -> Mapping[str, Network]: ...
    @property
    def heads(self) -> Mapping[str, HeadNode]: ...
    @property
    def ha(self) -> HA | None: ...
    @property
    def lab(self) -> Lab | None: ...


def _inline_passwords(base: Path_, options: dict[str, str]) -> Iterator[tuple[Path_, str]]:
    for key in INLINE_PASSWORD_KEYS:
        if key in options:
            yield (
                (*base, key),
                "do not write a fence password into the spec (it is copied to both heads and shown by tools); put it "
                "in a file of mode 0600 and name that file in password_file, or use the agent's password_script",
            )


def check_fencing(parts: Parts) -> Iterator[tuple[Path_, str]]:
    ha = parts.ha
    if ha is None:
        return
    fencing = ha.fencing
    yield from _inline_passwords(("ha", "fencing", "options"), fencing.options)
    heads = {head.hostname for head in parts.heads.values() if head.hostname is not None}
    for target, options in fencing.targets.items():
        base: Path_ = ("ha", "fencing", "targets", target)
        if heads and target not in heads:
            yield base, f"{target!r} is not a head; fencing targets are the heads: {', '.join(sorted(heads))}"
        yield from _inline_passwords(base, options)


def check_bmcs(parts: Parts) -> Iterator[tuple[Path_, str]]:
    """Each lab BMC belongs to a head and sits on one of the cluster's networks (the heads must reach it)."""
    if parts.lab is None:
        return
    heads = {head.hostname for head in parts.heads.values() if head.hostname is not None}
    nets = [net.subnet for net in parts.networks.values()]
    for head, address in parts.lab.bmcs.items():
        path: Path_ = ("lab", "bmcs", head)
        if heads and head not in heads:
            yield path, f"{head!r} is not a head; a lab BMC powers a head: {', '.join(sorted(heads))}"
        net = next((n for n in nets if address in n), None)
        if nets and net is None:
            where = ", ".join(str(n) for n in nets)
            yield path, f"{address} is on none of the cluster's networks ({where}); put the BMC on the private one"
        elif net is not None and net.prefixlen < 31 and address in (net.network_address, net.broadcast_address):
            yield path, f"{address} is not a usable address of {net}"
    owners: dict[ipaddress.IPv4Address, str] = {}
    for head, address in parts.lab.bmcs.items():
        if address in owners:
            yield ("lab", "bmcs", head), f"{address} is already the BMC of {owners[address]}; give each BMC its own"
        owners[address] = head
