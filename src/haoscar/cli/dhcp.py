"""``haoscar dhcp ...``: OSCAR's Configure DHCP Server, and running dnsmasq with the rendered config."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.netboot import print_sync
from haoscar.cli.render import console, print_json, table
from haoscar.cli.wire_text import wire_text
from haoscar.commands.env import Env

dhcp_app = typer.Typer(help="The private network's DHCP + TFTP server (dnsmasq).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
InterfaceOption = Annotated[
    str | None, typer.Option("--interface", help="The private interface to serve (default: the head's, e.g. eth0).")
]


def _env(ctx: typer.Context) -> Env:
    return Env(cli_context(ctx).state_dir)


@dhcp_app.command("configure")
def configure(
    ctx: typer.Context,
    *,
    interface: InterfaceOption = None,
    quarantine: Annotated[
        str | None,
        typer.Option(help="Give unknown MACs addresses from START-END (no boot file); '' removes the range."),
    ] = None,
    server: Annotated[
        str | None, typer.Option(help="The boot server's address (default: the head's private IP).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="The boot server's port (default: 8470).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Regenerate everything from the database and start dnsmasq, or reload it (restart only if its main config
    changed, since dnsmasq reads that only at start)."""
    from haoscar.commands import dhcp

    request = dhcp.ConfigureDhcp(interface=interface, quarantine=quarantine, server=server, port=port)
    with _env(ctx) as env:
        result = dhcp.configure(env, request)
    if as_json:
        print_json(result.as_dict())
        return
    # The restart a changed main config needs is done by now: no warning about it.
    print_sync(result.sync.as_dict() | {"restart_needed": False}, False)
    console.print(f"dnsmasq {result.action} (pid {result.pid}) with {result.config}", markup=False)


@dhcp_app.command("start")
def start(ctx: typer.Context, interface: InterfaceOption = None, as_json: JsonOption = False) -> None:
    """Start dnsmasq with the current config (regenerated first)."""
    from haoscar.commands import dhcp

    with _env(ctx) as env:
        result = dhcp.start(env, dhcp.StartDhcp(interface=interface))
    if as_json:
        print_json(result.as_dict())
        return
    how = "already running" if result.already_running else "started"
    console.print(f"dnsmasq {how} (pid {result.pid}) with {result.config}", markup=False)


@dhcp_app.command("stop")
def stop(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Stop the dnsmasq haoscar started (found through its pid file)."""
    from haoscar.commands import dhcp

    with _env(ctx) as env:
        result = dhcp.stop(env)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"dnsmasq (pid {result.pid}) stopped" if result.pid else "dnsmasq was not running")


@dhcp_app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Whether dnsmasq runs, on which interface, and its current leases."""
    from haoscar.commands import dhcp

    with _env(ctx) as env:
        current = dhcp.status(env)
    if as_json:
        print_json(
            {
                "running": current.running,
                "pid": current.pid,
                "interface": current.interface,
                "config": current.config,
                "leases": [lease.__dict__ for lease in current.leases],
            }
        )
        return
    state = f"[green]running[/] (pid {current.pid})" if current.running else "[red]stopped[/]"
    console.print(f"dnsmasq {state} on {wire_text(current.interface)}, config {wire_text(current.config)}")
    # Lease host names are what the clients sent.
    rows = [
        (
            wire_text(lease.mac),
            wire_text(lease.ip),
            wire_text(lease.hostname),
            datetime.fromtimestamp(lease.expires, UTC).isoformat(),
        )
        for lease in current.leases
    ]
    console.print(table(f"{len(rows)} leases", ["MAC", "IP", "host name", "expires"], rows))


def register(app: typer.Typer) -> None:
    app.add_typer(dhcp_app, name="dhcp")
