"""``haoscar slurm status|sync|report``: the Slurm controller, its config from the database, node hardware."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, flags, print_json, table, warn
from haoscar.commands.env import Env

slurm_app = typer.Typer(help="Slurm: slurm.conf from the cluster database, the controller on the active head.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
SpecOption = Annotated[str, typer.Option("--spec", help="The cluster spec.")]
ActiveOption = Annotated[
    str | None, typer.Option("--active", help="The active head (controller address without a private alias).")
]


def _env(ctx: typer.Context) -> Env:
    return Env(cli_context(ctx).state_dir)


@slurm_app.command("status")
def status(
    ctx: typer.Context,
    spec: SpecOption = "/etc/haoscar/cluster.yaml",
    active: ActiveOption = None,
    as_json: JsonOption = False,
) -> None:
    """The controller (through its address) and every node's Slurm state."""
    from haoscar.commands import slurm

    with _env(ctx) as env, flags(spec_file="--spec"):
        report = slurm.status(env, slurm.SlurmStatusRequest(spec_file=spec, active=active))
    if as_json:
        print_json(report.as_dict())
        return
    state = "up" if report.controller_up else "NOT answering"
    console.print(f"controller {report.controller}: {state} ({report.ping})")
    rows = [
        [n["name"], n["address"], n["slurm_state"], n["cpus"], n["memory_mb"], "yes" if n["reported"] else "default"]
        for n in report.nodes
    ]
    console.print(table(f"{len(rows)} nodes", ["node", "address", "Slurm state", "CPUs", "MiB", "reported"], rows))
    if report.unknown:
        warn(f"Slurm knows nodes the database does not: {', '.join(report.unknown)}; run haoscar slurm sync")


@slurm_app.command("sync")
def sync(
    ctx: typer.Context,
    *,
    spec: SpecOption = "/etc/haoscar/cluster.yaml",
    active: ActiveOption = None,
    push_key: Annotated[bool, typer.Option("--push-key", help="Also push the cluster's munge key.")] = False,
    no_hardware: Annotated[bool, typer.Option("--no-hardware", help="Do not ask nodes for slurmd -C.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Regenerate slurm.conf from the database, push it to the heads and nodes, reconfigure the controller."""
    from haoscar.commands import slurm

    request = slurm.SyncSlurm(spec_file=spec, active=active, push_key=push_key, ask_hardware=not no_hardware)
    with _env(ctx) as env, flags(spec_file="--spec"):
        report = slurm.sync(env, request)
    if as_json:
        print_json(report.as_dict())
        return
    verb = "written" if report.changed else "unchanged"
    console.print(f"{report.conf_path} {verb}: {len(report.nodes)} nodes, controller {report.controller}")
    console.print(f"pushed to {', '.join(report.pushed) or 'no other host'}")
    if report.defaults:
        warn(f"no hardware report yet (1 CPU, 1 MiB assumed): {', '.join(report.defaults)}")
    if not report.reconfigured:
        warn(f"scontrol reconfigure did not succeed: {report.reconfigure_output or 'no controller running'}")


@slurm_app.command("report")
def report(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The compute node.")],
    cpus: Annotated[int, typer.Option("--cpus", help="CPUs, as slurmd -C reports them.")],
    memory_mb: Annotated[int, typer.Option("--memory-mb", help="RealMemory in MiB, as slurmd -C reports it.")],
) -> None:
    """Record a node's hardware (what its installer or slurmd -C reported)."""
    from haoscar.commands import slurm

    with _env(ctx) as env, flags(node="NODE"):
        changed = slurm.report_hardware(env, slurm.ReportHardware(node=node, cpus=cpus, memory_mb=memory_mb))
    console.print(f"{node}: {cpus} CPUs, {memory_mb} MiB {'recorded' if changed else '(unchanged)'}")


def register(app: typer.Typer) -> None:
    app.add_typer(slurm_app, name="slurm")
