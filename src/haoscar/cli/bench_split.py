"""``haoscar bench split-brain``: two owners of the alias IP at once, haoscar beside keepalived (docs/benchmarks.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.bench_ha import JsonOption, SpecOption, _fmt, _progress, _spec
from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, print_json, table


@bench_app.command("split-brain")
def split_brain(
    ctx: typer.Context,
    *,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            "--scenario",
            help="heads_partitioned, active_isolated or active_frozen (repeat it; default: all three).",
        ),
    ] = None,
    system: Annotated[
        list[str] | None,
        typer.Option("--system", help="haoscar or keepalived (repeat it; default: both)."),
    ] = None,
    fault_seconds: Annotated[
        float, typer.Option("--fault-seconds", min=0.5, help="How long each fault lasts (partition, freeze).")
    ] = 5.0,
    recovery_seconds: Annotated[
        float, typer.Option("--recovery-seconds", min=0.0, help="How long to keep watching after the fault ends.")
    ] = 3.0,
    spec_file: SpecOption = None,
    as_json: JsonOption = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Heads partitioned, the active head cut off, the active head frozen: time with two VIP owners (5 ms samples)."""
    from haoscar.scenarios.bench.split_brain import SCENARIOS, SYSTEMS, SplitBrainOptions, run_split_brain_bench

    options = SplitBrainOptions(
        scenarios=tuple(scenario or SCENARIOS),
        systems=tuple(system or SYSTEMS),
        fault_s=fault_seconds,
        recovery_s=recovery_seconds,
    )
    spec = _spec(spec_file)
    with _progress("bench split-brain") as progress:
        result = run_split_brain_bench(spec, cli_context(ctx).state_dir, options, progress)
    keep("split-brain", result, save, out, note)
    if as_json:
        print_json(result)
        return
    rows = [
        (name, who, _fmt(case["two_owner_ms"]), ", ".join(map(str, case["client_answering_sequence"])))
        for name, by in result["scenarios"].items()
        for who, case in by.items()
    ]
    console.print(table("Two owners of the VIP (ms)", ["scenario", "system", "two owners", "client answered by"], rows))


def register(app: typer.Typer) -> None:
    """The command lives on the shared ``bench`` group; importing this module registered it."""
