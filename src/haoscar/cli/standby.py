"""``haoscar standby add``: HA-OSCAR's Add Standby Server, defining the standby head as a node of its own."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, print_json, table
from haoscar.cli.wire_text import wire_text

if TYPE_CHECKING:
    from haoscar.commands.clone import CloneOptions, CloneReport
    from haoscar.commands.env import Env

standby_app = typer.Typer(help="The standby head node (HA-OSCAR's Add Standby Server).", no_args_is_help=True)


@standby_app.command("add")
def add(
    ctx: typer.Context,
    *,
    alias_ip: Annotated[str, typer.Option(help="The standby's public alias IP.")],
    local_ip: Annotated[str, typer.Option(help="The standby's local (private) IP.")],
    image: Annotated[str, typer.Option(help="The image fetched from the primary.")] = "serverimage",
    primary_public_interface: Annotated[str, typer.Option(help="The primary's public network interface.")] = "eth1",
    standby_public_interface: Annotated[str, typer.Option(help="The standby's public network interface.")] = "eth1",
    netmask: Annotated[str | None, typer.Option(help="Subnet mask (default: the spec's private network).")] = None,
    gateway: Annotated[str | None, typer.Option(help="Default gateway.")] = None,
    hostname: Annotated[str, typer.Option(help="The standby's host name.")] = "standby",
    public_ip: Annotated[str | None, typer.Option(help="The standby's own public IP, if it has one.")] = None,
    private_interface: Annotated[str, typer.Option(help="The standby's private interface.")] = "eth0",
    domain: Annotated[str | None, typer.Option(help="DNS domain (default: the spec's cluster domain).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Define the standby head node with the Add Standby Server fields."""
    from haoscar.commands.standby import StandbyServer, standby_add

    request = StandbyServer(
        alias_ip=alias_ip,
        local_ip=local_ip,
        image=image,
        primary_public_interface=primary_public_interface,
        standby_public_interface=standby_public_interface,
        netmask=netmask,
        gateway=gateway,
        hostname=hostname,
        public_ip=public_ip,
        private_interface=private_interface,
        domain=domain,
    )
    added = standby_add(cli_env(ctx), request)
    if as_json:
        print_json(added.as_dict())
        return
    row = added.node
    console.print(
        table(
            "Standby head defined",
            ["name", "role", "image", "local IP", "alias IP", "install state"],
            [(row.name, row.role, row.image, row.ip, added.alias_ip, row.install_state)],
        )
    )


@standby_app.command("clone")
def clone(
    ctx: typer.Context,
    *,
    spec: Annotated[Path, typer.Option("--spec", help="The cluster spec; heads.standby is the standby to clone.")],
    golden_client: Annotated[
        str | None, typer.Option(help="The primary's address for Fetch Image [default: its private IP].")
    ] = None,
    source_root: Annotated[str, typer.Option(help="The tree to fetch on the primary.")] = "/",
    ssh_user: Annotated[str, typer.Option(help="The ssh user on the primary, the standby and the witness.")] = "root",
    ssh_port: Annotated[int, typer.Option(help="Their ssh port.", min=1, max=65535)] = 22,
    exclude_file: Annotated[Path | None, typer.Option(help="rsync patterns left out of the image.")] = None,
    standby_mac: Annotated[
        str | None, typer.Option(help="The standby's private MAC [default: collect it from its DHCP request].")
    ] = None,
    interface: Annotated[str | None, typer.Option(help="Where MACs are collected [default: primary's].")] = None,
    collect_timeout: Annotated[float, typer.Option(help="Seconds to listen for the standby's MAC.", min=1)] = 120,
    wait_install: Annotated[
        float, typer.Option(help="Seconds to wait for the standby's install (0: stop and resume later).", min=0)
    ] = 1800,
    start_command: Annotated[
        str, typer.Option(help="How HA daemons are started (see install complete) [default: systemd units].")
    ] = "",
    ha_wait: Annotated[float, typer.Option(help="Seconds to wait for HA to come up.", min=1)] = 60,
    restart: Annotated[bool, typer.Option("--restart", help="Run every step again, not only those left.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """The standby head cloned from the primary, HA-OSCAR's walkthrough as one guided flow: fetch the primary's
    image, add the standby, network boot, MAC, DHCP, wait for the standby's install, Complete Installation.
    Stops at the first failure with the reason (exit 2) or when the standby must be powered on (exit 3);
    running it again resumes after the steps already done."""
    from haoscar.commands.clone import CloneOptions, standby_clone

    options = CloneOptions(
        spec_file=spec,
        golden_client=golden_client,
        source_root=source_root,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        exclude_file=exclude_file,
        standby_mac=standby_mac,
        interface=interface,
        collect_timeout=collect_timeout,
        wait_install=wait_install,
        start_command=start_command,
        ha_wait=ha_wait,
        restart=restart,
    )
    if as_json:
        report = standby_clone(cli_env(ctx), options)
        print_json(report.as_dict())
    else:
        report = _clone_with_progress(cli_env(ctx), options)
        _render_clone(report)
    if not report.ok:
        raise typer.Exit(3 if report.waiting else 2)


def _render_clone(report: CloneReport) -> None:
    # A step's detail can quote the network (a DHCP host name, an installer's failure message): plain text only.
    rows = [
        (MARKS[s.status], wire_text(s.title), s.status, wire_text(s.detail), f"{s.seconds:g}") for s in report.steps
    ]
    console.print(table("Standby clone", ["", "step", "status", "result", "s"], rows, keys=["step"]))
    if report.complete is not None:
        from haoscar.cli.install import render_complete

        render_complete(report.complete)


MARKS = {"done": "[green]✓[/]", "earlier": "[green]✓[/]", "waiting": "[yellow]…[/]", "failed": "[red]✗[/]"}


def _clone_with_progress(env: Env, options: CloneOptions) -> CloneReport:
    """The clone with a line per finished step and a progress bar for the step under way. Every text in them that
    a peer chose (MACs and host names from DHCP, the installer's stage and messages) goes through ``wire_text``."""
    from rich.progress import BarColumn, Progress, TextColumn

    from haoscar.commands.clone import StepResult, standby_clone

    bars = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"), console=console)
    current: dict[str, Any] = {}

    def observe(kind: str, payload: Any) -> None:
        if kind == "step-start":
            current["task"] = bars.add_task(wire_text(payload[1]), total=100, info="")
        elif kind == "step" and isinstance(payload, StepResult):
            if "task" in current:
                bars.update(current.pop("task"), completed=100, visible=False)
            console.print(f"{MARKS[payload.status]} {wire_text(payload.title)}: {wire_text(payload.detail)}")
        elif kind == "install" and "task" in current:
            stage, percent, detail = payload
            bars.update(current["task"], completed=percent, info=f"{wire_text(stage)} {wire_text(detail)}")
        elif kind == "complete" and "task" in current:
            bars.update(current["task"], info=wire_text(payload))

    with bars:
        return standby_clone(env, options, observe)


def register(app: typer.Typer) -> None:
    app.add_typer(standby_app, name="standby")
