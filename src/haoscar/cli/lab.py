"""``haoscar lab ...``: bring a virtual cluster up and down, look at it, run commands in it, break it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, flags, print_json, table
from haoscar.commands import lab as cmd

if TYPE_CHECKING:  # the report type of lab up/status; haoscar.lab (pyroute2) loads only when a lab command runs
    from haoscar.lab import LabStatus

lab_app = typer.Typer(
    help="The virtual cluster: hosts in network namespaces on bridged networks, with fault injection.",
    no_args_is_help=True,
)

NameOpt = Annotated[str, typer.Option("--name", "-n", help="Which lab (several can be up at once).")]
HostArg = Annotated[str, typer.Argument(help="A host of the lab, e.g. head1 (see `haoscar lab status`).")]


def render_status(status: LabStatus) -> None:
    """Hosts and networks of a lab as Rich tables (also used by ``haoscar demo``)."""
    colours = {"running": "green", "frozen": "cyan", "crashed": "red", "dead": "red"}
    hosts = []
    for host in status.hosts:
        links = "\n".join(
            f"{i.name} {i.address or '-'} ({i.network}{'' if i.up else ', DOWN'})" for i in host.interfaces
        )
        state = f"[{colours.get(host.state, 'white')}]{host.state}[/]"
        hosts.append((host.name, host.role, state, host.init_pid or "-", host.processes, links))
    columns = ["host", "role", "state", "init pid", "procs", "interfaces"]
    drop = ["init pid", "procs", "role"]
    console.print(table(f"Lab {status.name}: hosts", columns, hosts, keys=["host", "interfaces"], drop=drop))
    nets = [(n.name, n.subnet, n.bridge, ", ".join(n.hosts)) for n in status.networks]
    console.print(
        table(
            f"Lab {status.name}: networks", ["network", "subnet", "bridge", "hosts"], nets, keys=["network", "subnet"]
        )
    )
    faults = [("partition", f"{p['a']} ⟂ {p['b']}", p["network"] or "all shared") for p in status.partitions]
    faults += [("loss", f"{h} {i}", f"{pct} %") for h, per in status.losses.items() for i, pct in per.items()]
    if faults:
        console.print(table(f"Lab {status.name}: faults", ["fault", "where", "detail"], faults))


@lab_app.command("up")
def up(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Option("--spec", "-s", help="The cluster spec, e.g. examples/lab.yaml.")],
    name: NameOpt = "lab",
    as_json: Annotated[bool, typer.Option("--json", help="Print the lab's status as JSON.")] = False,
) -> None:
    """Build the lab of a spec: both heads, every compute client, the witness and the user host."""
    with console.status(f"bringing lab {name} up", spinner="dots"):
        result = cmd.lab_up(cli_env(ctx), cmd.LabUp(spec, name))
    if as_json:
        print_json(result.to_dict())
        return
    render_status(result)
    first = result.hosts[0].name if result.hosts else "HOST"
    console.print(f"[green]✓[/] lab {name} is up; `haoscar lab exec {first} -- ip -br addr` enters a host")


@lab_app.command("down")
def down(ctx: typer.Context, name: NameOpt = "lab") -> None:
    """Remove every namespace, link, process and file of the lab (safe to run twice)."""
    if cmd.lab_down(cli_env(ctx), cmd.LabDown(name)).was_up:
        console.print(f"[green]✓[/] lab {name} is down")
    else:
        console.print(f"lab {name} is not up; nothing to do")


@lab_app.command("status")
def status(
    ctx: typer.Context,
    name: NameOpt = "lab",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Hosts (role, state, processes, interfaces), networks and active faults."""
    result = cmd.lab_status(cli_env(ctx), cmd.ShowLab(name))
    if as_json:
        print_json(result.to_dict())
    else:
        render_status(result)


@lab_app.command("exec")
def exec_(
    ctx: typer.Context,
    host: HostArg,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    name: NameOpt = "lab",
) -> None:
    """Run a command inside a host; exits with the command's exit status."""
    raise typer.Exit(cmd.lab_exec(cli_env(ctx), cmd.ExecInHost(host, command, name)).code)


@lab_app.command("crash")
def crash(ctx: typer.Context, host: HostArg, name: NameOpt = "lab") -> None:
    """Power loss: SIGKILL every process of the host and set its links down."""
    cmd.lab_crash(cli_env(ctx), cmd.CrashHost(host, name))
    console.print(f"host {host} crashed (processes killed, links down)")


@lab_app.command("restore")
def restore(ctx: typer.Context, host: HostArg, name: NameOpt = "lab") -> None:
    """Boot a crashed host: links up, the spec's addresses only, /run emptied, its disk dirs kept."""
    cmd.lab_restore(cli_env(ctx), cmd.RestoreHost(host, name))
    console.print(f"host {host} is back up")


@lab_app.command("link")
def link(
    ctx: typer.Context,
    host: HostArg,
    iface: Annotated[str, typer.Argument(help="An interface of the host, e.g. eth1.")],
    state: Annotated[str, typer.Argument(help="down or up.")],
    name: NameOpt = "lab",
) -> None:
    """Set one link of a host down or up (a pulled cable)."""
    with flags(state="state"):  # the positional STATE, named as the message always read
        cmd.lab_link(cli_env(ctx), cmd.SetLink(host, iface, state, name))
    console.print(f"{host} {iface} is {state}")


@lab_app.command("partition")
def partition(
    ctx: typer.Context,
    a: HostArg,
    b: HostArg,
    network: Annotated[str | None, typer.Option("--network", help="Cut only this network.")] = None,
    name: NameOpt = "lab",
) -> None:
    """Cut two hosts apart (both directions, every shared network or one); `lab heal` undoes it."""
    cmd.lab_partition(cli_env(ctx), cmd.PartitionHosts(a, b, network, name))
    console.print(f"{a} and {b} are partitioned on {network or 'every network they share'}")


@lab_app.command("heal")
def heal(ctx: typer.Context, name: NameOpt = "lab") -> None:
    """Remove every partition and packet loss."""
    cmd.lab_heal(cli_env(ctx), cmd.HealLab(name))
    console.print("partitions and losses removed")


@lab_app.command("freeze")
def freeze(
    ctx: typer.Context,
    host: HostArg,
    links: Annotated[bool, typer.Option("--links", help="Also set its links down, like a paused VM.")] = False,
    name: NameOpt = "lab",
) -> None:
    """SIGSTOP every process of a host; `lab thaw` continues them."""
    cmd.lab_freeze(cli_env(ctx), cmd.FreezeHost(host, links, name))
    console.print(f"host {host} is frozen{' with its links down' if links else ''}")


@lab_app.command("thaw")
def thaw(ctx: typer.Context, host: HostArg, name: NameOpt = "lab") -> None:
    """Continue a frozen host (and bring its links back if the freeze took them down)."""
    cmd.lab_thaw(cli_env(ctx), cmd.ThawHost(host, name))
    console.print(f"host {host} runs again")


@lab_app.command("loss")
def loss(
    ctx: typer.Context,
    host: HostArg,
    iface: Annotated[str, typer.Argument(help="An interface of the host, e.g. eth1.")],
    percent: Annotated[int, typer.Option("--percent", "-p", help="0-100; 0 removes the loss.")],
    name: NameOpt = "lab",
) -> None:
    """Drop a share of the frames in and out of one interface at random (nftables)."""
    cmd.lab_loss(cli_env(ctx), cmd.LossOnLink(host, iface, percent, name))
    console.print(f"{host} {iface}: {percent} % loss")


def register(app: typer.Typer) -> None:
    import haoscar.cli.bench_cluster  # noqa: F401 - registers `haoscar bench lab` on the bench group

    app.add_typer(lab_app, name="lab")
