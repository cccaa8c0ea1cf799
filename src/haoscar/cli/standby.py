"""``haoscar standby add``: HA-OSCAR's Add Standby Server, defining the standby head as a node of its own."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table

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
    netmask: Annotated[str | None, typer.Option(help="Subnet mask [default: the spec's private network].")] = None,
    gateway: Annotated[str | None, typer.Option(help="Default gateway.")] = None,
    hostname: Annotated[str, typer.Option(help="The standby's host name.")] = "standby",
    public_ip: Annotated[str | None, typer.Option(help="The standby's own public IP, if it has one.")] = None,
    private_interface: Annotated[str, typer.Option(help="The standby's private interface.")] = "eth0",
    domain: Annotated[str | None, typer.Option(help="DNS domain [default: the spec's cluster domain].")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Define the standby head node with the Add Standby Server fields."""
    from haoscar.commands.nodes import StandbyServer, add_standby
    from haoscar.db.session import open_database

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
    db = open_database(cli_context(ctx).state_dir)
    try:
        row = add_standby(db, request)
    finally:
        db.close()
    if as_json:
        print_json(row.as_dict() | {"alias_ip": alias_ip})
        return
    console.print(
        table(
            "Standby head defined",
            ["name", "role", "image", "local IP", "alias IP", "install state"],
            [(row.name, row.role, row.image, row.ip, alias_ip, row.install_state)],
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(standby_app, name="standby")
