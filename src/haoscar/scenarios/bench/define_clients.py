"""``haoscar bench define-clients``: OSCAR's Define Clients for thousands of nodes, timed (CLI: cli/bench_cluster.py).

The clients go through :func:`haoscar.commands.nodes.define_clients`, the code path of ``haoscar node add``, into a
fresh database in a temporary state directory. The target is 10,000 clients in at most 5 s on a 2-core machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from haoscar.commands.nodes import DefineClients, define_clients, list_nodes
from haoscar.commands.wiring import open_cluster_database
from haoscar.db.models import Image

# 198.18.0.0/15 holds 131,070 host addresses: room for any count this bench is asked for.
NETMASK = "255.254.0.0"
START_IP = "198.18.0.10"


def run(nodes: int, padding: int = 5) -> dict[str, Any]:
    """Define ``nodes`` clients in a fresh database; seconds for the definition and for listing them back."""
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-") as tmp:
        started = time.monotonic()
        db = open_cluster_database(Path(tmp))
        with db.session() as session:
            session.add(Image(name="benchimage", source="bench"))
        setup = time.monotonic() - started
        request = DefineClients(
            image="benchimage",
            base_name="node",
            count=nodes,
            start_number=1,
            padding=padding,
            start_ip=START_IP,
            netmask=NETMASK,
            domain="bench.haoscar",
        )
        started = time.monotonic()
        result = define_clients(db, request)
        seconds = time.monotonic() - started
        started = time.monotonic()
        listed = list_nodes(db)
        list_seconds = time.monotonic() - started
        db.close()
    if len(listed) != nodes or len(result.names) != nodes:
        raise RuntimeError(f"defined {len(result.names)} and listed {len(listed)} nodes, expected {nodes}")
    return {
        "nodes": nodes,
        "seconds": round(seconds, 3),
        "target_seconds": 5.0,
        "nodes_per_second": round(nodes / seconds) if seconds > 0 else None,
        "list_seconds": round(list_seconds, 3),
        "setup_seconds": round(setup, 3),
        "nodeset": result.nodeset,
        "first_ip": result.first_ip,
        "last_ip": result.last_ip,
    }
