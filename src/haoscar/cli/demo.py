"""``haoscar demo`` (what ``make demo`` runs): the virtual cluster up, shown, proven, and torn down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, err_console, print_json, table

if TYPE_CHECKING:
    from haoscar.scenarios.demo import Act
    from haoscar.scenarios.demo_cluster_steps import ClusterDemo
    from haoscar.scenarios.web_lab import WebLab
    from haoscar.spec import ClusterSpec


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
    complete: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Instead of the failover and Slurm acts: complete and test the cluster, crash the active head, "
            "test again against the new head (~5 min).",
        ),
    ] = False,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Instead of the acts: keep a lab up with the web console running, print its URL, an admin's "
            "name and password and the command that opens it in a browser; Ctrl-C takes the lab down.",
        ),
    ] = False,
) -> None:
    """Bring the demo cluster up in network namespaces, prove who reaches whom, fail the head over, tear it down."""
    from haoscar.lab import require_root
    from haoscar.scenarios.demo import load_demo_spec, run_demo

    require_root("`haoscar demo`")
    loaded = load_demo_spec(spec)
    state = cli_context(ctx).state_dir
    if web:
        _web(state, name, as_json)
        return
    install_state = state if install else None
    # Live views of the acts go to stderr with --json so that stdout stays one JSON document.
    screen = err_console if as_json else console
    cluster, acts, seen = _acts(loaded, screen, install_state, slurm=slurm, cluster=complete)
    if as_json:
        report = run_demo(cluster, state, name, acts=acts)
        print_json(report.to_dict() | ({"cluster": seen[0].to_dict()} if seen else {}))
    else:
        console.print(f"[bold]haoscar demo[/]: cluster {cluster.cluster.name} as a virtual lab named {name}")
        report = run_demo(cluster, state, name, acts=acts, observe=_show)
        verdict = "[green]✓ every check passed[/]" if report.ok else "[red]✗ some checks failed[/]"
        console.print(verdict)
    if not report.ok:
        raise typer.Exit(1)


def _web(state: Path, name: str, as_json: bool) -> None:
    """``demo --web``: what to open is printed (one JSON line with --json) once the console answers; the lab stays
    up until Ctrl-C or SIGTERM, then it is taken down."""
    from haoscar.scenarios.web_demo import connection_lines, hold_until_interrupted, run_web_demo

    def show(weblab: WebLab) -> None:
        if as_json:  # one line, flushed: a script reads it while the lab stays up
            print(json.dumps(weblab.as_dict()), flush=True)
            return
        console.print(f"[bold]haoscar demo --web[/]: lab {weblab.lab_name} is up with the web console")
        for label, value in connection_lines(weblab):
            console.print(f"[bold]{label:>9}[/] {value}", soft_wrap=True)
        console.print("Press Ctrl-C to take the lab down.")

    run_web_demo(state, name, show, hold_until_interrupted)
    if not as_json:
        console.print(f"lab {name} taken down: no namespace, link or process of it is left")


def _acts(
    spec: ClusterSpec, screen: Console, install_state: Path | None, *, slurm: bool, cluster: bool
) -> tuple[ClusterSpec, list[Act], list[ClusterDemo]]:
    """The lab's spec, the acts, and where the cluster act leaves what it saw (``--cluster``: the reachability
    act, then the complete cluster's act on a lab with a BMC per head; otherwise the console act follows the
    reachability act, printing the web console's URL and credentials while the lab runs)."""
    from haoscar.scenarios.demo import REACHABILITY, Act, console_act, default_acts, install_act, reachability
    from haoscar.scenarios.demo_cluster_setup import cluster_setup_act, lab_spec

    seen: list[ClusterDemo] = []
    if not cluster:
        acts = default_acts(screen, install_state, slurm)
        return spec, [acts[0], console_act(screen), *acts[1:]], seen
    acts = [Act(REACHABILITY, reachability), cluster_setup_act(screen, seen)]
    if install_state is not None:
        acts.append(install_act(screen, install_state))
    return lab_spec(spec), acts, seen


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
