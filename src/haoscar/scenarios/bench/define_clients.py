"""``haoscar bench define-clients``: OSCAR's Define Clients for thousands of nodes, timed.

The clients go through :func:`haoscar.commands.nodes.define_clients`, the code path of ``haoscar node add``, into a
fresh database in a temporary state directory. The target is 10,000 clients in at most 5 s on a 2-core machine.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, print_json
from haoscar.commands.nodes import DefineClients, define_clients, list_nodes
from haoscar.db.models import Image
from haoscar.db.session import open_database

# 198.18.0.0/15 holds 131,070 host addresses: room for any count this bench is asked for.
NETMASK = "255.254.0.0"
START_IP = "198.18.0.10"


def run(nodes: int, padding: int = 5) -> dict[str, Any]:
    """Define ``nodes`` clients in a fresh database; seconds for the definition and for listing them back."""
    with tempfile.TemporaryDirectory(prefix="haoscar-bench-") as tmp:
        started = time.monotonic()
        db = open_database(Path(tmp))
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


@bench_app.command("define-clients")
def define_clients_bench(
    nodes: Annotated[int, typer.Option(min=1, max=100_000, help="How many clients to define.")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Time `node add` for many clients (fresh temporary database; target: 10,000 in <= 5 s)."""
    result = run(nodes)
    if as_json:
        print_json(result)
        return
    console.print(
        f"defined {result['nodes']} clients {result['nodeset']} in {result['seconds']:.3f} s "
        f"({result['nodes_per_second']}/s; target <= {result['target_seconds']:g} s); "
        f"listed them back in {result['list_seconds']:.3f} s"
    )
