"""``haoscar bench self-heal`` (a killed head-node service restarted in place, docs/ha-resources.md) and ``haoscar
bench install-fanout`` (N lab hosts pulling their image at once, beside N parallel rsyncs; docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, err_console, print_json, table
from haoscar.scenarios.bench.self_heal import measure


@bench_app.command("self-heal")
def self_heal(
    *,
    runs: Annotated[int, typer.Option("--runs", min=1, max=1000, help="How many times the service is killed.")] = 10,
    interval: Annotated[float, typer.Option("--interval", min=0.01, help="The service's check interval (s).")] = 0.2,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Kill a service RUNS times; time kill -> noticed -> restarted in place and healthy."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console, transient=True
    ) as progress:
        task = progress.add_task("self-heal", total=None)
        result = asyncio.run(measure(runs, interval, lambda m: progress.update(task, description=f"self-heal: {m}")))
    keep("self-heal", result, save, out, note)
    if as_json:
        print_json(result)
        return
    console.print(table("self-heal", ["measure", "value"], [(k, v) for k, v in result.items()]))


@bench_app.command("install-fanout")
def install_fanout(
    *,
    nodes: Annotated[int, typer.Option("--nodes", min=1, max=500, help="Lab hosts pulling the image at once.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """NODES lab hosts pull their image at once through the installer's own fetch path, then the same hosts rsync
    the same tree from an rsync daemon: aggregate MB/s, slowest node, server CPU, every tree verified."""
    from haoscar.scenarios.bench.install_fanout import run_bench

    with err_console.status(f"install-fanout: {nodes} hosts, haoscar then rsync"):
        result = run_bench(nodes)
    keep("install-fanout", result, save, out, note)
    if as_json:
        print_json(result)
        return
    rows = [
        (system, result[system]["aggregate_mb_per_s"], result[system]["slowest_node_s"],
         result[system]["server_cpu_pct_of_one_core"], f"{result[system]['nodes_verified']}/{nodes}")
        for system in ("haoscar", "rsync")
    ]  # fmt: skip
    title = f"install-fanout: {nodes} nodes, image {result['image_mb']} MB in {result['image_files']} files"
    console.print(table(title, ["system", "aggregate MB/s", "slowest node s", "server CPU %", "verified"], rows))


def register(app: typer.Typer) -> None:
    """The command registers itself on ``bench_app`` at import; nothing to add to the root."""
