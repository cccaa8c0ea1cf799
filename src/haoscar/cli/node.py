"""``haoscar node ...``: define, change, delete and list cluster nodes (OSCAR's Define Clients)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table

if TYPE_CHECKING:
    from haoscar.commands.nodes import NodeRow

node_app = typer.Typer(help="Cluster nodes: define clients, change, delete and list them.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@node_app.command("list")
def list_(
    ctx: typer.Context,
    nodeset: Annotated[str | None, typer.Argument(help="Only these nodes, a node set such as node[001-016].")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show nodes with their role, group, image, private address, MAC, boot mode and install state."""
    from haoscar.commands.nodes import list_nodes
    from haoscar.db.session import open_database
    from haoscar.provision.install_progress import monitor_rows

    state = cli_context(ctx).state_dir
    db = open_database(state)
    try:
        rows = list_nodes(db, nodeset)
        # The failure's stage and reason (`install_detail`), as the installer or the stall watcher reported it.
        reasons = {m.node: m.detail for m in monitor_rows(db, state) if m.install_state == "failed"}
    finally:
        db.close()
    if as_json:
        print_json([row.as_dict() | {"install_detail": reasons.get(row.name, "")} for row in rows])
        return

    def shown(row: NodeRow) -> str:
        if row.install_state == "failed":
            return f"[red]failed: {reasons.get(row.name) or 'no reason given'}[/]"
        return row.install_state

    columns = ["name", "role", "group", "image", "private IP", "MAC", "boot mode", "install state"]
    cells = [(r.name, r.role, r.group, r.image, r.ip, r.mac or "-", r.boot_mode, shown(r)) for r in rows]
    console.print(table(f"{len(rows)} nodes", columns, cells))


@node_app.command("add")
def add(
    ctx: typer.Context,
    *,
    image: Annotated[str, typer.Option(help="The client image, e.g. oscarimage.")],
    start_ip: Annotated[str, typer.Option(help="The first client's private IP; the next ones count upwards.")],
    base_name: Annotated[str | None, typer.Option(help="Name prefix, e.g. node (with --count).")] = None,
    count: Annotated[int | None, typer.Option(help="How many clients to define (with --base-name).")] = None,
    start_number: Annotated[int, typer.Option(help="The first client's number.")] = 1,
    padding: Annotated[int, typer.Option(help="Zero-pad numbers to this many digits (3: node001).")] = 0,
    nodeset: Annotated[
        str | None, typer.Option(help="Name the clients with a node set instead, e.g. 'node[001-128]'.")
    ] = None,
    domain: Annotated[str | None, typer.Option(help="DNS domain (default: the spec's cluster domain).")] = None,
    netmask: Annotated[
        str | None, typer.Option(help="Subnet mask, e.g. 255.255.255.0 (default: the spec's private network).")
    ] = None,
    gateway: Annotated[str | None, typer.Option(help="Default gateway for the clients.")] = None,
    interface: Annotated[str, typer.Option(help="The clients' private interface.")] = "eth0",
    group: Annotated[str | None, typer.Option(help="Group name (default: the base name).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Define compute clients with OSCAR's Define Clients fields (or a node set)."""
    from haoscar.commands.nodes import DefineClients, define_clients
    from haoscar.db.session import open_database

    request = DefineClients(
        image=image,
        start_ip=start_ip,
        netmask=netmask,
        domain=domain,
        base_name=base_name,
        count=count,
        start_number=start_number,
        padding=padding,
        nodeset=nodeset,
        gateway=gateway,
        interface=interface,
        group=group,
    )
    db = open_database(cli_context(ctx).state_dir)
    try:
        result = define_clients(db, request)
    finally:
        db.close()
    if as_json:
        print_json(result.as_dict())
        return
    console.print(
        f"defined {len(result.names)} clients [bold]{result.nodeset}[/] in group {result.group}, "
        f"image {result.image}, {result.first_ip} - {result.last_ip}"
    )


@node_app.command("set")
def set_(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(help="The nodes to change, e.g. node[001-004].")],
    *,
    image: Annotated[str | None, typer.Option(help="Install this image on them.")] = None,
    mac: Annotated[str | None, typer.Option(help="The private interface's MAC (one node only).")] = None,
    ip: Annotated[str | None, typer.Option(help="The private interface's IP (one node only).")] = None,
    boot_mode: Annotated[str | None, typer.Option(help="netboot (install) or localboot.")] = None,
    domain: Annotated[str | None, typer.Option(help="DNS domain.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Change nodes' image, boot mode or domain, or one node's MAC or IP."""
    from haoscar.commands.nodes import set_nodes
    from haoscar.db.session import open_database

    db = open_database(cli_context(ctx).state_dir)
    try:
        result = set_nodes(db, nodeset, image=image, mac=mac, ip=ip, boot_mode=boot_mode, domain=domain)
    finally:
        db.close()
    if as_json:
        print_json(result.as_dict())
        return
    if result.changed:
        console.print(f"changed {len(result.changed)} nodes: {result.as_dict()['changed']}")
    if result.unchanged:
        console.print(f"already so: {result.as_dict()['unchanged']}")


@node_app.command("delete")
def delete(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(help="The nodes to delete, e.g. node[009-016].")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete nodes with their interfaces (nodes from a spec come back on the next `spec apply`)."""
    from haoscar.commands.nodes import delete_nodes, list_nodes
    from haoscar.db.addresses import fold
    from haoscar.db.session import open_database

    db = open_database(cli_context(ctx).state_dir)
    try:
        if not yes:
            names = [row.name for row in list_nodes(db, nodeset)]
            typer.confirm(f"delete {len(names)} nodes {fold(names)}?", abort=True)
        deleted = delete_nodes(db, nodeset)
    finally:
        db.close()
    if as_json:
        print_json({"deleted": fold(deleted), "count": len(deleted)})
    else:
        console.print(f"deleted {len(deleted)} nodes: {fold(deleted)}")


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    # Importing the benchmark registers `haoscar bench define-clients` on the shared bench group.
    import haoscar.scenarios.bench.define_clients  # noqa: F401
