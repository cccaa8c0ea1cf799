"""NFS in a lab (docs/nfs.md): the ``nfs-ganesha`` HA service in a spec, and Debian's libnfs tools as the client.

A lab head runs the export only as the HA service of the active head: put ``nfs_service()`` in ``ha.services`` (and
a ``private_alias_ip`` on both heads), start HA with ``ha_lab.start_ha(..., replication=True)``, and the active head
serves ``nfs.exports`` (default /home) on the private alias. A compute host reads and writes through libnfs, which
needs no kernel NFS client: ``nfs_tool(lab, "node01", "nfs-cat", url(alias, "/home/x", uid=4242))``.
"""

from __future__ import annotations

import subprocess
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from haoscar.lab.lab import Lab
from haoscar.spec import ClusterSpec, load_spec


def nfs_service(name: str = "nfs", **options: Any) -> dict[str, Any]:
    """The ``ha.services`` entry of the NFS export (checked every 0.5 s; a start may take 10 s under load)."""
    return {"name": name, "kind": "nfs-ganesha", "interval": 0.5, "timeout": 10, **options}


def nfs_lab_spec(where: Path, alias: str, **options: Any) -> ClusterSpec:
    """The shipped lab spec with ``alias`` as both heads' private alias and the NFS export (``nfs_service(**options)``)
    as its one HA service, written to ``where/cluster.yaml`` (where file problems would point) and loaded."""
    raw = yaml.safe_load((files("haoscar") / "data" / "lab.yaml").read_text())
    for head in raw["heads"].values():
        head["private_alias_ip"] = alias
    raw["ha"]["services"] = [nfs_service(**options)]
    path = where / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


def url(server: str, path: str, uid: int | None = None, gid: int | None = None) -> str:
    """A libnfs URL over NFSv4 (the only version the heads serve), as ``uid``:``gid`` (AUTH_SYS) when given."""
    query = ["version=4"]
    if uid is not None:
        query += [f"uid={uid}", f"gid={gid if gid is not None else uid}"]
    return f"nfs://{server}{path}?{'&'.join(query)}"


def nfs_tool(lab: Lab, host: str, *argv: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
    """Run one libnfs tool (nfs-ls, nfs-cat, nfs-cp, nfs-stat) in ``host``, killed after ``timeout`` seconds (a
    request to an address nobody answers yet would otherwise retry for minutes)."""
    return lab.exec(host, ["timeout", f"{timeout:g}", *argv], check=False, timeout=timeout + 10)
