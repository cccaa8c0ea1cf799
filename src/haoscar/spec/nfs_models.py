"""The ``nfs:`` section of the cluster spec: the paths the active head exports to the compute nodes (docs/nfs.md).

Checks of one field live here (an export path is absolute, normalised, not ``/``); checks across fields (unique
paths and export ids, inside ``ha.replicate_roots``, the private alias) live in ``spec.nfs_checks``.
"""

from __future__ import annotations

import zlib
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from haoscar.spec.types import IPv4, Text


class SpecModel(BaseModel):
    """As ``spec.models.SpecModel`` (which imports this module): unknown keys are errors, a spec is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# Never exported, nor any tree that holds them: the heads' keys, database and images live there (a squashed root
# cannot read 0600 files, but their names, the spec and whatever is world-readable would be served to every node).
SYSTEM_TREES = ("/etc", "/root", "/boot", "/proc", "/sys", "/dev", "/run", "/usr", "/var/lib/haoscar")


def check_path(value: Any) -> str:
    """An absolute, normalised path other than / that a Ganesha config can quote."""
    text = str(value)
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path; write e.g. /home")
    parts = text.split("/")[1:]
    if text == "/" or text.rstrip("/") == "":
        raise ValueError("'/' would export the head's whole root file system; export a tree such as /home")
    if any(part in ("", ".", "..") for part in (parts[:-1] if text.endswith("/") else parts)):
        raise ValueError(f"{text!r} is not normalised; write it without . , .. or //")
    if any(c in text for c in '"\\\n\r\t;{}#'):
        raise ValueError(f"{text!r} holds a character an NFS-Ganesha config cannot quote; rename the directory")
    return text.rstrip("/")


def check_export_path(value: Any) -> str:
    path = check_path(value)
    for tree in SYSTEM_TREES:
        if path == tree or path.startswith(tree + "/") or tree.startswith(path + "/"):
            raise ValueError(
                f"{path!r} would export {tree}, which holds the head's system, keys or state; export a data tree "
                "such as /home or /srv/data"
            )
    return path


ExportPath = Annotated[Text, AfterValidator(check_export_path)]
FIRST_EXPORT_ID = 2  # 0 is NFSv4's pseudo root; 1 is Ganesha's default for an export without one


def default_export_id(path: str) -> int:
    """A stable Export_Id for ``path``: the same on both heads and across restarts (a client's file handles
    carry it), and unchanged when other exports are added or reordered."""
    return FIRST_EXPORT_ID + zlib.crc32(path.encode()) % (65535 - FIRST_EXPORT_ID)


class NfsExport(SpecModel):
    """One exported tree: ``path`` on the active head, seen by clients at the same path (its NFSv4 Pseudo path)."""

    path: ExportPath
    access: Literal["rw", "ro"] = Field(default="rw", description="read-write or read-only for the compute nodes")
    squash: Literal["root", "all", "none"] = Field(
        default="root",
        description="root: a client's root is the anonymous user (default); all: everyone is; none: root stays "
        "root (only for a tree haoscar's own tools write as root over NFS)",
    )
    export_id: int | None = Field(
        default=None, ge=FIRST_EXPORT_ID, le=65535, description="Ganesha's Export_Id (default: derived from path)"
    )

    @property
    def effective_id(self) -> int:
        return self.export_id if self.export_id is not None else default_export_id(self.path)


class NFS(SpecModel):
    """NFS service of the heads (NFS-Ganesha, NFSv4.x, on the private alias)."""

    exports: list[NfsExport] = Field(default_factory=lambda: [NfsExport(path="/home")])
    storage: Literal["replicated", "shared", "external"] = Field(
        default="replicated",
        description="replicated: each head has its own copy (file replication), the export moves; shared: both "
        "heads mount the same storage (SAN), the export moves; external: a NAS serves, the heads export nothing",
    )
    server: IPv4 | None = Field(default=None, description="storage: external only: the NAS the nodes mount from")
    recovery_dir: Text | None = Field(
        default=None,
        description="storage: shared only: NFSv4 client recovery records on the shared storage (a grace period "
        "lets clients reclaim their state after a failover)",
    )
    port: int = Field(default=2049, ge=1, le=65535)
    lease_s: int = Field(default=10, ge=1, le=120, description="NFSv4 lease (Ganesha Lease_Lifetime)")
    max_connections: int = Field(default=1024, ge=1, le=65536, description="RPC_Max_Connections")
    idle_timeout_s: int = Field(default=300, ge=10, le=3600, description="an idle client connection is closed")

    @model_validator(mode="after")
    def _storage_needs(self) -> NFS:
        if self.storage == "external" and self.server is None:
            raise ValueError("storage: external needs server, the NAS address the compute nodes mount from")
        if self.storage != "external" and self.server is not None:
            raise ValueError("server is only for storage: external; the heads serve from the private alias")
        if self.recovery_dir is not None and self.storage != "shared":
            raise ValueError("recovery_dir is only for storage: shared (replicated storage needs no grace period)")
        if self.recovery_dir is not None:
            check_path(self.recovery_dir)
        return self
