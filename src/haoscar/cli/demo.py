"""``haoscar demo`` (what ``make demo`` runs): the virtual cluster up, shown, proven, and torn down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, err_console, print_json, table


def _show(kind: str, payload: Any) -> None:
    from haoscar.cli.lab import render_status
    from haoscar.scenarios.demo import ActResult

    if kind == "lab":
        render_status(payload)
    elif kind == "act-start":
        console.rule(f"[bold]{payload}")
    elif kind == "act" and isinstance(payload, ActResult):
        rows = [
            (
                "[green]✓[/]" if c.ok else "[red]✗[/]",
                c.what,
                c.source,
                f"{c.target} {c.address}",
                c.detail or ("reachable" if c.observed else "unreachable"),
            )
            for c in payload.checks
        ]
        console.print(table(None, ["", "check", "from", "to", "observed"], rows))
    elif kind == "down":
        console.print(f"lab {payload} taken down: no namespace, link or process of it is left")


def demo(
    ctx: typer.Context,
    *,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="A cluster spec to demo instead of the built-in lab.yaml.")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="The demo lab's name.")] = "demo",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
    install: Annotated[
        bool,
        typer.Option("--install", help="Add the network install act: a qemu VM client installs and boots (~2 min)."),
    ] = False,
    slurm: Annotated[
        bool,
        typer.Option("--slurm/--no-slurm", help="The cluster act: Slurm jobs through a crash of the active head."),
    ] = True,
) -> None:
    """Bring the demo cluster up in network namespaces, prove who reaches whom, fail the head over, tear it down."""
    from haoscar.lab import require_root
    from haoscar.scenarios.demo import default_acts, load_demo_spec, run_demo

    require_root("`haoscar demo`")
    cluster = load_demo_spec(spec)
    state = cli_context(ctx).state_dir
    install_state = state if install else None
    if as_json:
        # Live views of the acts go to stderr so that stdout stays one JSON document.
        report = run_demo(cluster, state, name, acts=default_acts(err_console, install_state, slurm))
        print_json(report.to_dict())
    else:
        console.print(f"[bold]haoscar demo[/]: cluster {cluster.cluster.name} as a virtual lab named {name}")
        report = run_demo(cluster, state, name, acts=default_acts(console, install_state, slurm), observe=_show)
        verdict = "[green]✓ every check passed[/]" if report.ok else "[red]✗ some checks failed[/]"
        console.print(verdict)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
