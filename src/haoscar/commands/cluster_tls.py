"""The cluster's TLS material, as set-up distributes it: one CA (EC P-256, ``haoscar.tlsca``) and a certificate per
head for its host name and every address it has (private, heartbeat, public), so one certificate serves the token
API and both replication channels (mutual TLS) whatever network they use.

Each head's TLS directory (``tls/`` beside ``ha.api_token_file``, ``/etc/haoscar/tls`` by default; mode 0700)
receives ``ca.crt`` (0644), ``HEAD.crt`` (0644) and ``HEAD.key`` (0600). The CA key (``ca.key``, 0600) is written
on the primary only, where ``haoscar install complete`` runs: the standby can use its certificate but never issue
one, and the witness gets nothing (it speaks only the signed lease protocol). Running set-up again keeps the CA and
every certificate that is still valid for its head's addresses, so nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from haoscar.spec.models import ClusterSpec
from haoscar.tlsca import tls_bundle

W = TypeVar("W")


@dataclass(frozen=True)
class TlsWrite:
    """One file of a head's TLS directory (the same fields as install_complete's FileWrite)."""

    host: str
    path: str
    data: bytes
    mode: int


def tls_dir_of(spec: ClusterSpec) -> Path:
    """Where every head keeps its TLS files: beside the API token, as the API and replication look for them."""
    return Path(spec.ha.api_token_file).parent / "tls"


def head_addresses(spec: ClusterSpec) -> dict[str, list[str]]:
    """Each head's host name and every address it has: its certificate names them all."""
    heads = (spec.heads.primary, spec.heads.standby)
    return {
        head.hostname: [str(ip) for ip in (head.private_ip, head.heartbeat_ip, head.public_ip) if ip is not None]
        for head in heads
    }


class Reader(Protocol):
    """A host's files (install_complete's ``Transport`` is one)."""

    def read(self, path: str) -> bytes | None: ...


def plan_tls(spec: ClusterSpec, hosts: Mapping[str, Reader], make: Callable[[str, str, bytes, int], W]) -> list[W]:
    """What each head's TLS directory must hold, as ``make(host, path, data, mode)``; ``hosts[name].read(path)``
    gives what is there now (None: missing). The primary's CA is kept when it has both ``ca.crt`` and
    ``ca.key``; a head's certificate is kept when that CA signed it for all of the head's addresses. The CA key
    is written on the primary only."""
    tls = tls_dir_of(spec)
    primary = spec.heads.primary.hostname
    ca_crt, ca_key = hosts[primary].read(str(tls / "ca.crt")), hosts[primary].read(str(tls / "ca.key"))
    existing: dict[str, tuple[bytes, bytes]] = {}
    addresses = head_addresses(spec)
    for head in addresses:
        cert, key = hosts[head].read(str(tls / f"{head}.crt")), hosts[head].read(str(tls / f"{head}.key"))
        if cert and key:
            existing[head] = (cert, key)
    bundle = tls_bundle(addresses, ca=(ca_crt, ca_key) if ca_crt and ca_key else None, existing=existing)
    writes = [make(primary, str(tls / "ca.key"), bundle.ca_key, 0o600)]
    for head, files in bundle.files.items():
        writes += [make(head, str(tls / name), data, mode) for name, (data, mode) in files.items()]
    return writes


def write_lab_tls(spec: ClusterSpec, host_root: Callable[[str], Path]) -> None:
    """For lab harnesses: what set-up writes, into each head's private file system (``host_root(host)`` is that
    host's ``/`` as seen from here)."""

    @dataclass
    class LabHost:
        root: Path

        def read(self, path: str) -> bytes | None:
            target = self.root / path.lstrip("/")
            return target.read_bytes() if target.exists() else None

    heads = (spec.heads.primary.hostname, spec.heads.standby.hostname)
    for write in plan_tls(spec, {head: LabHost(host_root(head)) for head in heads}, TlsWrite):
        target = host_root(write.host) / write.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.parent.chmod(0o700)
        target.touch(mode=write.mode)
        target.chmod(write.mode)  # before the bytes: a key is never readable by others
        target.write_bytes(write.data)
