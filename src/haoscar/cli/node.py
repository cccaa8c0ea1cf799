"""``haoscar node ...``: define, change, delete and list cluster nodes (OSCAR's Define Clients)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import Listing, console, flags, print_json, table
from haoscar.cli.user import resync_after_node_change

if TYPE_CHECKING:
    from haoscar.commands.nodes import NodeList, NodeRow

node_app = typer.Typer(help="Cluster nodes: define clients, change, delete and list them.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


# Node names, addresses and MACs are never cut; in a narrow terminal these columns give way first.
NODE_COLUMNS = ["name", "role", "group", "image", "version", "private IP", "MAC", "boot mode", "install state"]
NODE_KEYS = ["name", "private IP", "MAC"]
NODE_DROP = ["group", "boot mode", "version", "image", "role", "install state"]


def node_table(listing: NodeList) -> Listing:
    """The table of ``haoscar node list`` (a failed install shows its stage and reason)."""

    def shown(row: NodeRow) -> str:
        if row.install_state == "failed":
            return f"[red]failed: {listing.install_detail.get(row.name) or 'no reason given'}[/]"
        return row.install_state

    def version(row: NodeRow) -> str:
        return "-" if row.image_version is None else str(row.image_version)

    cells = [
        (r.name, r.role, r.group, r.image, version(r), r.ip, r.mac or "-", r.boot_mode, shown(r)) for r in listing.rows
    ]
    return table(f"{len(listing.rows)} nodes", NODE_COLUMNS, cells, keys=NODE_KEYS, drop=NODE_DROP)


@node_app.command("list")
def list_(
    ctx: typer.Context,
    nodeset: Annotated[str | None, typer.Argument(help="Only these nodes, a node set such as node[001-016].")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show nodes with their role, group, image and the version of it they run, private address, MAC, boot mode and
    install state."""
    from haoscar.commands.nodes import ListNodes, node_list

    listing = node_list(cli_env(ctx), ListNodes(nodeset))
    if as_json:
        print_json(listing.as_dicts())
        return
    console.print(node_table(listing))


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
    from haoscar.commands.nodes import DefineClients, node_add

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
    result = node_add(cli_env(ctx), request)
    resync_after_node_change(cli_env(ctx))  # /etc/hosts and known hosts on the installed nodes (docs/accounts.md)
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
    from haoscar.commands.nodes import SetNodes, node_set

    request = SetNodes(nodeset, image=image, mac=mac, ip=ip, boot_mode=boot_mode, domain=domain)
    with flags(nodeset="NODESET"):  # a positional argument here, an option in `node add`
        result = node_set(cli_env(ctx), request)
    if result.changed:
        resync_after_node_change(cli_env(ctx))
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
    from haoscar.commands.nodes import DeleteNodes, ListNodes, node_delete, node_list

    env = cli_env(ctx)
    if not yes:
        doomed = node_list(env, ListNodes(nodeset))
        typer.confirm(f"delete {len(doomed.rows)} nodes {doomed.nodeset}?", abort=True)
    deleted = node_delete(env, DeleteNodes(nodeset))
    resync_after_node_change(env)
    if as_json:
        print_json(deleted.as_dict())
    else:
        console.print(f"deleted {len(deleted.names)} nodes: {deleted.nodeset}")


@node_app.command("sync")
def sync(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(metavar="NODESET", help="Compute nodes: node[01-16], @compute, @rack1...")],
    *,
    image: Annotated[
        str | None, typer.Option(help="NAME or NAME:VERSION (default: each node's image, its current version).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would change; change nothing.")] = False,
    fanout: Annotated[int, typer.Option("--fanout", "-f", help="Transfers at once.")] = 16,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", "-t", help="Seconds to connect before a node is unreachable.")
    ] = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Bring running nodes to an image version (SystemImager's updateclient): rsync over ssh, each node's own files
    kept (host name, ssh host keys, fstab, network, ...; docs/node-sync.md).

    Exit status 0 when every node is synced (or, with --dry-run, could be), 1 when any was refused, unreachable or
    failed (its version unchanged), 2 for bad input (nothing runs).
    """
    from haoscar.cli.node_sync_render import render_sync
    from haoscar.commands.node_sync import NodeSyncRequest, node_sync

    request = NodeSyncRequest(nodeset, image, dry_run, fanout, connect_timeout)
    with flags(nodes="NODESET"):
        report = node_sync(cli_env(ctx), request)
    render_sync(report, as_json)
    raise typer.Exit(report.exit_status)


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    # Importing the benchmark registers `haoscar bench define-clients` on the shared bench group.
    import haoscar.cli.bench_cluster  # noqa: F401
