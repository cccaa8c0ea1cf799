"""``haoscar bench idle`` and ``haoscar bench table``, which writes the README's measured table from the newest kept
result of each bench (``--save``, ``cli/bench_save.py``; docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from haoscar.cli.bench_ha import _progress, _spec
from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, err_console, print_json, table
from haoscar.errors import UserError


@bench_app.command("idle")
def idle(
    ctx: typer.Context,
    *,
    seconds: Annotated[float, typer.Option("--seconds", min=1.0, help="Sampling window for each system.")] = 10.0,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="The lab's cluster spec (default: data/lab.yaml).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Idle CPU and memory of the active head (daemon + every child, shipped configuration) beside keepalived's."""
    from haoscar.lab import require_root
    from haoscar.scenarios.bench.idle import run_idle_bench

    require_root("`haoscar bench idle`")
    spec = _spec(spec_file)
    with _progress("bench idle") as progress:
        result = run_idle_bench(spec, cli_context(ctx).state_dir, seconds, progress)
    keep("idle", result, save, out, note)
    if as_json:
        print_json(result)
        return
    rows = [
        ("haoscar (daemon + children)", result["idle_cpu_pct"], result["rss_mb"], result["pss_mb"]),
        ("keepalived", result["keepalived"]["cpu_pct"], result["keepalived"]["rss_mb"], result["keepalived"]["pss_mb"]),
    ]
    console.print(table("Idle cost, active head", ["system", "CPU % of a core", "RSS MB", "PSS MB"], rows))


@bench_app.command("table")
def bench_table(
    directory: Annotated[Path, typer.Option("--dir", help="Where the kept results are.", show_default=True)] = Path(
        "docs/bench-results"
    ),
    update: Annotated[
        Path | None,
        typer.Option("--update", help="Replace the table between the bench-table markers of this file (README.md)."),
    ] = None,
) -> None:
    """The measured table (markdown) from the newest kept result of each bench, a bound beside every number."""
    from haoscar.scenarios.bench.table import END, START, replace_between_markers, table_from

    text = table_from(directory)
    if update is None:
        typer.echo(text, nl=False)
        return
    try:
        before = update.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {update}: {exc.strerror}") from None
    if START not in before or END not in before:
        raise UserError(
            f"{update} has no bench-table markers; put these two lines where the table goes:\n{START}\n{END}"
        )
    update.write_text(replace_between_markers(before, text))
    err_console.print(f"updated the table in {update}")


def register(app: typer.Typer) -> None:
    """The commands register themselves on ``bench_app`` at import; nothing to add to the root."""
