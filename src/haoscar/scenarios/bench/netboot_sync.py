"""``haoscar bench netboot-sync``: regenerate DHCP / network-boot files for N nodes, full and one-node.

Cobbler needs minutes to regenerate DHCP/TFTP for a few thousand systems; the target here is a full pass over
10,000 nodes in <= 2 s and a one-node change in <= 50 ms. For comparison (informational) it also times writing all
host entries as one monolithic ``dhcp-hostsfile``.
"""

from __future__ import annotations

import ipaddress
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update

from haoscar.commands.wiring import open_cluster_database
from haoscar.db.models import Image, Interface, Network, Node
from haoscar.db.session import Database
from haoscar.provision.dnsmasq_conf import render_hostsfile
from haoscar.provision.netboot_files import write_file
from haoscar.provision.netboot_snapshot import read_nodes
from haoscar.provision.netboot_sync import netboot_sync

PRIVATE = ipaddress.IPv4Network("198.18.0.0/15")


def seed_cluster(db: Database, count: int, *, image: str = "oscarimage", domain: str = "bench.haoscar") -> None:
    """A primary head and ``count`` compute nodes with MACs, bulk-inserted (Core inserts, no ORM objects)."""
    if count > PRIVATE.num_addresses - 16:
        raise ValueError(f"at most {PRIVATE.num_addresses - 16} nodes fit into {PRIVATE}")
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
        session.execute(
            insert(Node),
            [
                {"name": f"node{str(i + 1).zfill(width)}", "role": "compute", "domain": domain, "image_id": image_id}
                for i in range(count)
            ],
        )
        ids = {name: id_ for name, id_ in session.execute(select(Node.name, Node.id).where(Node.role == "compute"))}
        base = PRIVATE.network_address + 16
        session.execute(
            insert(Interface),
            [
                {
                    "node_id": ids[f"node{str(i + 1).zfill(width)}"],
                    "name": "eth0",
                    "network": "private",
                    "ip": str(base + i),
                    "prefix": PRIVATE.prefixlen,
                    "mac": "52:54:" + ":".join(f"{(i >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0)),
                }
                for i in range(count)
            ],
        )


def run_bench(count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-netboot-") as tmp:
        state = Path(tmp)
        db = open_cluster_database(state)
        try:
            seed_cluster(db, count)
            started = time.monotonic()
            full = netboot_sync(db, state, reload=False)
            full_s = time.monotonic() - started

            started = time.monotonic()
            again = netboot_sync(db, state, reload=False)
            noop_s = time.monotonic() - started

            target = f"node{str(count // 2 or 1).zfill(len(str(count)))}"
            started = time.monotonic()
            with db.session() as session:
                session.execute(update(Node).where(Node.name == target).values(boot_mode="localboot"))
            one = netboot_sync(db, state, nodes={target}, reload=False)
            one_ms = (time.monotonic() - started) * 1000

            started = time.monotonic()
            with db.session() as session:
                snapshot = read_nodes(session)
            write_file(state / "hostsfile", render_hostsfile(snapshot).encode(), durable=True)
            mono_s = time.monotonic() - started
        finally:
            db.close()
    return {
        "nodes": count,
        "full_sync_s": round(full_s, 3),
        "one_node_sync_ms": round(one_ms, 2),
        "files_written_full": full.written,
        "noop_full_sync_s": round(noop_s, 3),
        "files_written_noop": again.written,
        "one_node_files_written": one.written,
        "monolithic_hostsfile_s": round(mono_s, 3),
        "targets": {"full_sync_s": 2.0, "one_node_sync_ms": 50.0},
    }
