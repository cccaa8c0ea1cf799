"""``haoscar bench lab``, ``define-clients`` and ``cluster-failover``: the CLI side of three benches of
``haoscar.scenarios.bench`` (which are plain functions returning dicts; this module parses, calls and renders)."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, err_console, print_json


@bench_app.command("lab")
def bench_lab(
    hosts: Annotated[int, typer.Option("--hosts", help="How many lab hosts (2 heads, witness, user, compute).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON (it is printed either way).")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Bring a synthetic lab of N hosts up and down; prints {"hosts", "up_s", "down_s"} as JSON."""
    from haoscar.lab import require_root
    from haoscar.scenarios.bench.lab import run

    require_root("`haoscar bench lab`")
    with err_console.status(f"bringing a {hosts}-host lab up and down", spinner="dots"):
        result = run(hosts)
        keep("lab", result, save, out, note)
    print_json(result)


@bench_app.command("define-clients")
def define_clients_bench(
    nodes: Annotated[int, typer.Option(min=1, max=100_000, help="How many clients to define.")] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Time `node add` for many clients (fresh temporary database; target: 10,000 in <= 5 s)."""
    from haoscar.scenarios.bench.define_clients import run

    result = run(nodes)
    keep("define-clients", result, save, out, note)
    if as_json:
        print_json(result)
        return
    console.print(
        f"defined {result['nodes']} clients {result['nodeset']} in {result['seconds']:.3f} s "
        f"({result['nodes_per_second']}/s; target <= {result['target_seconds']:g} s); "
        f"listed them back in {result['list_seconds']:.3f} s"
    )


@bench_app.command("cluster-failover")
def cluster_failover_bench(
    runs: Annotated[int, typer.Option("--runs", min=1, max=20, help="Crashes, each on a fresh lab.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print only JSON (it is printed either way).")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Crash the active head of a lab cluster running Slurm jobs; time the private alias, DHCP, squeue and a new
    job from the crash, and count lost jobs and samples with slurmctld on both heads (see docs/benchmarks.md)."""
    from haoscar.lab import require_root
    from haoscar.scenarios.bench.cluster_failover import run_cluster_failover_bench

    require_root("`haoscar bench cluster-failover`")
    with err_console.status("bench cluster-failover", spinner="dots") as status:
        result = run_cluster_failover_bench(runs, lambda m: status.update(f"bench cluster-failover: {m}"))
        keep("cluster-failover", result, save, out, note)
    print_json(result)


def register(app: typer.Typer) -> None:
    """The commands register themselves on ``bench_app`` at import; nothing to add to the root."""
