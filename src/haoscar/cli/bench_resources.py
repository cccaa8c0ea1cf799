"""``haoscar bench self-heal``: a killed head-node service restarted in place, measured (see docs/ha-resources.md)."""

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


def register(app: typer.Typer) -> None:
    """The command registers itself on ``bench_app`` at import; nothing to add to the root."""
