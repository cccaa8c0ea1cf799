"""``haoscar dhcp ...``: OSCAR's Configure DHCP Server, and running dnsmasq with the rendered config."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.netboot import print_sync
from haoscar.cli.render import console, print_json, table

dhcp_app = typer.Typer(help="The private network's DHCP + TFTP server (dnsmasq).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
InterfaceOption = Annotated[
    str | None, typer.Option("--interface", help="The private interface to serve (default: the head's, e.g. eth0).")
]


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
    from haoscar.db.session import open_database
    from haoscar.provision import dhcp_server
    from haoscar.provision.netboot_files import NetbootPaths
    from haoscar.provision.netboot_snapshot import save_settings
    from haoscar.provision.netboot_sync import netboot_sync

    state = cli_context(ctx).state_dir
    paths = NetbootPaths.under(state)
    db = open_database(state)
    try:
        save_settings(db, interface=interface, quarantine=quarantine, server=server, port=port)
        report = netboot_sync(db, state)
    finally:
        db.close()
    action = "reloaded" if report.reloaded_pid is not None else "unchanged"
    before = dhcp_server.running_pid(paths)
    if before is None:
        pid = dhcp_server.start(paths)
        action = "started"
    elif report.main_changed:
        dhcp_server.stop(paths)
        pid = dhcp_server.start(paths)
        action = "restarted"
    else:
        pid = before
    if as_json:
        print_json({"sync": report.as_dict(), "dnsmasq": {"pid": pid, "action": action}})
        return
    print_sync(report.as_dict() | {"restart_needed": False}, False)
    console.print(f"dnsmasq {action} (pid {pid}) with {paths.conf}")


@dhcp_app.command("start")
def start(ctx: typer.Context, interface: InterfaceOption = None, as_json: JsonOption = False) -> None:
    """Start dnsmasq with the current config (regenerated first)."""
    from haoscar.db.session import open_database
    from haoscar.provision import dhcp_server
    from haoscar.provision.netboot_files import NetbootPaths
    from haoscar.provision.netboot_snapshot import save_settings
    from haoscar.provision.netboot_sync import netboot_sync

    state = cli_context(ctx).state_dir
    paths = NetbootPaths.under(state)
    db = open_database(state)
    try:
        if interface is not None:
            save_settings(db, interface=interface)
        netboot_sync(db, state)
    finally:
        db.close()
    already = dhcp_server.running_pid(paths)
    pid = dhcp_server.start(paths)
    if as_json:
        print_json({"pid": pid, "already_running": already is not None, "config": str(paths.conf)})
        return
    console.print(f"dnsmasq {'already running' if already else 'started'} (pid {pid}) with {paths.conf}")


@dhcp_app.command("stop")
def stop(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Stop the dnsmasq haoscar started (found through its pid file)."""
    from haoscar.provision import dhcp_server
    from haoscar.provision.netboot_files import NetbootPaths

    pid = dhcp_server.stop(NetbootPaths.under(cli_context(ctx).state_dir))
    if as_json:
        print_json({"stopped_pid": pid})
        return
    console.print(f"dnsmasq (pid {pid}) stopped" if pid else "dnsmasq was not running")


@dhcp_app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Whether dnsmasq runs, on which interface, and its current leases."""
    from haoscar.provision import dhcp_server
    from haoscar.provision.netboot_files import NetbootPaths

    current = dhcp_server.status(NetbootPaths.under(cli_context(ctx).state_dir))
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
    console.print(f"dnsmasq {state} on {current.interface or '-'}, config {current.config}")
    rows = [
        (lease.mac, lease.ip, lease.hostname or "-", datetime.fromtimestamp(lease.expires, UTC).isoformat())
        for lease in current.leases
    ]
    console.print(table(f"{len(rows)} leases", ["MAC", "IP", "host name", "expires"], rows))


def register(app: typer.Typer) -> None:
    app.add_typer(dhcp_app, name="dhcp")
