"""``haoscar bench netboot-sync``: regenerate DHCP / network-boot files for N nodes, as shipped.

Cobbler needs minutes to regenerate DHCP/TFTP for a few thousand systems; the targets here are a full pass over
10,000 nodes in <= 2 s and a one-node change in <= 50 ms. Measured as a head runs it (issue 15): the state
directory of a lab host, dnsmasq running in that host on the rendered configuration (started as ``haoscar dhcp
configure`` starts it), and every sync with ``reload`` on, so a changed host entry costs its SIGHUP. The headline
``full_sync_s`` is a full pass over the EXISTING tree of N nodes (every node renumbered and given a new image, so
every host file and every iPXE script changes), not a first sync into an empty directory (``initial_sync_s``, kept
and named as such). For comparison (informational) it also times writing all host entries as one monolithic
``dhcp-hostsfile``.

The measuring half (``measure``) runs inside the lab host (``python -m haoscar.scenarios.bench.netboot_sync N``):
dnsmasq's pid file holds its pid in that host's PID namespace, which is where the reload must find it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update

import haoscar
from haoscar.commands.wiring import open_cluster_database
from haoscar.db.models import Image, Interface, Network, Node
from haoscar.db.session import Database
from haoscar.errors import UserError
from haoscar.provision import dhcp_server
from haoscar.provision.dnsmasq_conf import render_hostsfile
from haoscar.provision.netboot_files import NetbootPaths, write_file
from haoscar.provision.netboot_snapshot import read_nodes
from haoscar.provision.netboot_sync import SyncReport, netboot_sync, wait_for_cleanup

PRIVATE = ipaddress.IPv4Network("198.18.0.0/15")
HEAD_STATE = "/var/lib/haoscar"
TARGETS = {"full_sync_s": 2.0, "one_node_sync_ms": 50.0}


def _mac(i: int) -> str:
    return "52:54:" + ":".join(f"{(i >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0))


def seed_cluster(db: Database, count: int, *, image: str = "oscarimage", domain: str = "bench.haoscar") -> None:
    """A primary head and ``count`` compute nodes with MACs, bulk-inserted (Core inserts, no ORM objects)."""
    if 2 * count > PRIVATE.num_addresses - 32:
        raise UserError(f"nodes: at most {(PRIVATE.num_addresses - 32) // 2} nodes fit twice into {PRIVATE}")
    with db.session() as session:
        session.execute(insert(Network).values(name="private", subnet=str(PRIVATE), gateway=None))
        image_id = session.execute(insert(Image).values(name=image).returning(Image.id)).scalar_one()
        head_id = session.execute(
            insert(Node).values(name="head1", role="primary", domain=domain).returning(Node.id)
        ).scalar_one()
        session.execute(
            insert(Interface).values(
                node_id=head_id, name="eth0", network="private", ip=str(PRIVATE.network_address + 1), prefix=15
            )
        )
        width = len(str(count))
        names = [f"node{str(i + 1).zfill(width)}" for i in range(count)]
        session.execute(
            insert(Node), [{"name": n, "role": "compute", "domain": domain, "image_id": image_id} for n in names]
        )
        ids = {name: id_ for name, id_ in session.execute(select(Node.name, Node.id).where(Node.role == "compute"))}
        base = PRIVATE.network_address + 16
        session.execute(
            insert(Interface),
            [
                {"node_id": ids[n], "name": "eth0", "network": "private", "ip": str(base + i),
                 "prefix": PRIVATE.prefixlen, "mac": _mac(i)}
                for i, n in enumerate(names)
            ],
        )  # fmt: skip


def renumber_and_reimage(db: Database, count: int, image: str = "newimage") -> None:
    """Every compute node moves to a new address and a new image: each host line and each iPXE script changes."""
    base = PRIVATE.network_address + 16 + count
    with db.session() as session:
        image_id = session.execute(insert(Image).values(name=image).returning(Image.id)).scalar_one()
        session.execute(update(Node).where(Node.role == "compute").values(image_id=image_id))
        rows = session.execute(
            select(Interface.id).join(Node, Node.id == Interface.node_id).where(Node.role == "compute")
        ).all()
        # Core executemany: the ORM's bulk UPDATE wants the rows keyed by the primary key's own name.
        table = cast(Table, Interface.__table__)
        session.connection().execute(
            update(table).where(table.c.id == bindparam("iid")).values(ip=bindparam("new_ip")),
            [{"iid": row.id, "new_ip": str(base + i)} for i, row in enumerate(rows)],
        )


def _timed_sync(db: Database, state: Path, **kwargs: Any) -> tuple[float, SyncReport]:
    started = time.monotonic()
    report = netboot_sync(db, state, reload=True, **kwargs)
    return time.monotonic() - started, report


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(seconds: float, report: SyncReport) -> dict[str, Any]:
    return {
        "seconds": round(seconds, 3),
        "written": report.written,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "reloaded_dnsmasq": report.reloaded_pid is not None,
        "restart_needed": report.restart_needed,
    }


def measure(state: Path, count: int) -> dict[str, Any]:
    """Inside a lab host: seed, first sync, start dnsmasq, then the timed syncs with reload on."""
    paths = NetbootPaths.under(state)
    db = open_cluster_database(state)
    try:
        seed_cluster(db, count)
        initial_s, initial = _timed_sync(db, state)
        pid = dhcp_server.start(paths)  # what `haoscar dhcp configure` does after its sync
        try:
            renumber_and_reimage(db, count)
            dnsmasq_cpu = _cpu_s(pid)
            full_s, full = _timed_sync(db, state)
            started = time.monotonic()
            wait_for_cleanup()  # the replaced trees, removed in the background after the sync returned
            cleanup_s = time.monotonic() - started
            time.sleep(2.0)  # dnsmasq re-reads its hosts after the SIGHUP: what that costs it (not the sync's time)
            dnsmasq_reload_cpu_s = _cpu_s(pid) - dnsmasq_cpu
            noop_s, noop = _timed_sync(db, state)
            target = f"node{str(count // 2 or 1).zfill(len(str(count)))}"
            with db.session() as session:  # as `mac assign` does: a new MAC, so the host entry changes
                node_id = session.scalar(select(Node.id).where(Node.name == target))
                session.execute(update(Interface).where(Interface.node_id == node_id).values(mac=_mac(count + 7)))
            one_s, one = _timed_sync(db, state, nodes={target})
            with db.session() as session:  # as `netboot disable` does: only the iPXE script changes, no reload
                session.execute(update(Node).where(Node.name == target).values(boot_mode="localboot"))
            mode_s, mode = _timed_sync(db, state, nodes={target})
            alive = dhcp_server.running_pid(paths) == pid
        finally:
            dhcp_server.stop(paths)
        started = time.monotonic()
        with db.session() as session:
            snapshot = read_nodes(session)
        write_file(state / "hostsfile", render_hostsfile(snapshot).encode(), durable=True)
        mono_s = time.monotonic() - started
    finally:
        db.close()
    return {
        "full_sync_s": round(full_s, 3),
        "one_node_sync_ms": round(one_s * 1000, 2),
        "full_sync_old_tree_removal_s": round(cleanup_s, 3),
        "initial_sync_s": round(initial_s, 3),
        "noop_full_sync_s": round(noop_s, 3),
        "one_node_boot_mode_ms": round(mode_s * 1000, 2),
        "monolithic_hostsfile_s": round(mono_s, 3),
        "dnsmasq_cpu_after_full_reload_s": round(dnsmasq_reload_cpu_s, 3),
        "dnsmasq_survived": alive,
        "syncs": {
            "initial": _summary(initial_s, initial),
            "full": _summary(full_s, full),
            "noop_full": _summary(noop_s, noop),
            "one_node_mac": _summary(one_s, one),
            "one_node_boot_mode": _summary(mode_s, mode),
        },
    }


def _config(count: int, state_dir: Path) -> dict[str, Any]:
    from haoscar.scenarios.bench.shipped import git_commit

    return {
        "nodes": count,
        "reload": "on: dnsmasq runs in the lab host on the rendered config; a changed host entry is SIGHUP'd",
        "full_sync": "over the existing tree of every node, each renumbered and given a new image (every host file "
        "and iPXE script changes); until the new files are live and dnsmasq is SIGHUP'd. The replaced trees are "
        "removed after that, in the background (full_sync_old_tree_removal_s: how long after the sync returned)",
        "initial_sync": "into an empty netboot directory (before dnsmasq starts)",
        "one_node": "a new MAC for one node (host entry changes: SIGHUP), as `mac assign` does",
        "one_node_boot_mode": "netboot -> localboot of one node (its iPXE script only: no SIGHUP)",
        "state_dir": f"the lab host's {HEAD_STATE}, on the file system of {state_dir}",
        "haoscar_version": haoscar.__version__,
        "git_commit": git_commit(),
    }


def run_bench(count: int) -> dict[str, Any]:
    """Bring up a lab, measure in its head host, always take the lab down."""
    from haoscar.lab.defaults import default_spec
    from haoscar.lab.lab import Lab
    from haoscar.scenarios.lab_fixtures import unique_lab_name

    if count < 2:
        raise UserError("nodes: give at least 2 nodes")
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-netboot-") as tmp:
        lab = Lab.up(default_spec().model_copy(update={"clients": []}), unique_lab_name("bn"), Path(tmp))
        try:
            argv = [sys.executable, "-m", "haoscar.scenarios.bench.netboot_sync", HEAD_STATE, str(count)]
            done = lab.exec("head1", argv, timeout=900, check=False)
        finally:
            lab.down()
        if done.returncode != 0:
            raise UserError(f"the netboot sync bench failed in the lab host: {done.stderr.strip()[-800:]}")
        measured = json.loads(done.stdout)
        return {"nodes": count, **measured, "targets": TARGETS, "config": _config(count, Path(tmp))}


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]), int(sys.argv[2]))))
