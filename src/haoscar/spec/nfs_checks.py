"""Checks of the ``nfs:`` section across fields and sections (docs/nfs.md), beside ``spec.checks``.

An export path must be unique and have an Export_Id of its own (a client's file handles carry it); served by the
heads (an ``nfs-ganesha`` service) from replicated storage it must lie inside ``ha.replicate_roots``, because file
replication copies it to the standby as root; an ``nfs-ganesha`` service needs the private alias (the export
follows the active head through it) and a head that serves at all (not ``storage: external``).
"""

from __future__ import annotations

from collections.abc import Iterator

from haoscar.spec.checks import Finding, Parts


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def check_exports(parts: Parts) -> Iterator[Finding]:
    nfs = parts.nfs
    if nfs is None or ("nfs", "exports") in parts.bad:
        return
    paths: dict[str, int] = {}
    ids: dict[int, int] = {}
    # Replicated only when the heads serve them (an nfs-ganesha service): the default export must not make a spec
    # that serves no NFS wrong.
    served = parts.ha is not None and any(service.kind == "nfs-ganesha" for service in parts.ha.services)
    roots = [r.rstrip("/") or "/" for r in parts.ha.replicate_roots] if parts.ha is not None and served else []
    for i, export in enumerate(nfs.exports):
        if export.path in paths:
            yield ("nfs", "exports", i, "path"), f"{export.path} is exported twice (also entry {paths[export.path]})"
            continue
        paths[export.path] = i
        field = "export_id" if export.export_id is not None else "path"
        if export.effective_id in ids:
            other = nfs.exports[ids[export.effective_id]].path
            yield (
                ("nfs", "exports", i, field),
                f"Export_Id {export.effective_id} is also {other}'s; give one of them an export_id of its own",
            )
        ids.setdefault(export.effective_id, i)
        if nfs.storage == "replicated" and roots and not _inside(export.path, roots):
            yield (
                ("nfs", "exports", i, "path"),
                f"{export.path} is outside ha.replicate_roots ({', '.join(roots)}), so the standby would not have "
                "it; move it under one of them or add its tree to ha.replicate_roots",
            )


def check_nfs_service(parts: Parts) -> Iterator[Finding]:
    ha = parts.ha
    if ha is None:
        return
    indexes = [i for i, service in enumerate(ha.services) if service.kind == "nfs-ganesha"]
    for i in indexes[1:]:
        yield ("ha", "services", i, "kind"), f"a second nfs-ganesha service; a head runs one (first: {indexes[0]})"
    if not indexes:
        return
    where = ("ha", "services", indexes[0], "kind")
    if parts.nfs is not None and parts.nfs.storage == "external":
        yield where, "nfs.storage is external: the NAS serves the exports, so the heads run no nfs-ganesha service"
    primary = parts.heads.get("primary")
    alias_known = primary is not None and ("heads", "primary", "private_alias_ip") not in parts.bad
    if alias_known and primary is not None and primary.private_alias_ip is None:
        yield (
            where,
            "the NFS export follows the active head through the private alias; set heads.primary.private_alias_ip "
            "and heads.standby.private_alias_ip",
        )


def run_nfs_checks(parts: Parts) -> list[Finding]:
    return [*check_exports(parts), *check_nfs_service(parts)]
