"""``haoscar mac ...``: OSCAR's Collect MAC Address, Assign MAC to Node, Assign All, Import/Export MACs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table

if TYPE_CHECKING:
    from haoscar.provision.mac_collect import Seen
    from haoscar.provision.netboot_macs import Assignment

mac_app = typer.Typer(help="Learn client MAC addresses and give them to nodes.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _sync_nodes(ctx: typer.Context, assignments: list[Assignment]) -> None:
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_sync import netboot_sync

    if not assignments:
        return
    state = cli_context(ctx).state_dir
    db = open_database(state)
    try:
        netboot_sync(db, state, nodes={a.node for a in assignments})
    finally:
        db.close()


def _print_assignments(assignments: list[Assignment], as_json: bool) -> None:
    if as_json:
        print_json({"assigned": [a.as_dict() for a in assignments]})
        return
    console.print(table(f"{len(assignments)} MAC(s) assigned", ["node", "MAC"], [(a.node, a.mac) for a in assignments]))


@mac_app.command("collect")
def collect(
    ctx: typer.Context,
    *,
    interface: Annotated[str, typer.Option("--interface", help="The private interface to listen on, e.g. eth0.")],
    timeout: Annotated[float, typer.Option(help="Stop after this many seconds.", min=0.1)] = 60.0,
    auto: Annotated[bool, typer.Option("--auto", help="Bind each new MAC to the next node without one.")] = False,
    count: Annotated[int | None, typer.Option("--count", help="Stop after this many new MACs.", min=1)] = None,
    as_json: JsonOption = False,
) -> None:
    """Listen for DHCP DISCOVER / REQUEST from unknown MACs and show them as they arrive."""
    from rich.live import Live

    from haoscar.db.session import open_database
    from haoscar.provision.mac_collect import collect as run

    state = cli_context(ctx).state_dir
    db = open_database(state)
    rows: list[tuple[str, ...]] = []

    def render() -> object:
        title = f"MACs seen on {interface} (Ctrl-C or {timeout:g} s to stop)"
        return table(title, ["#", "MAC", "message", "arch", "user class", "seen", "assigned to"], rows)

    def on_seen(seen: Seen) -> None:
        req = seen.request
        for index, row in enumerate(rows):
            if row[1] == req.mac:
                rows[index] = (*row[:2], req.message_type, row[3], row[4], str(seen.seen_count), row[6])
                break
        else:
            rows.append(
                (
                    str(len(rows) + 1),
                    req.mac,
                    req.message_type,
                    req.client_arch or "-",
                    req.user_class or "-",
                    str(seen.seen_count),
                    seen.assigned_to or "-",
                )
            )
        if live is not None:
            live.update(render())  # type: ignore[arg-type]

    live: Live | None = None
    try:
        if as_json:
            result = run(db, state, interface, timeout=timeout, auto=auto, stop_after=count)
        else:
            with Live(render(), console=console, refresh_per_second=4) as live:  # type: ignore[arg-type]
                result = run(db, state, interface, timeout=timeout, auto=auto, on_seen=on_seen, stop_after=count)
    finally:
        db.close()
    if as_json:
        print_json(result.as_dict())
        return
    new = len([s for s in result.sightings if s.new])
    hint = f"{len(result.assigned)} bound to nodes" if auto else "assign them with haoscar mac assign-all NODESET"
    console.print(
        f"\n{new} new MAC(s), {result.known} request(s) from known nodes, "
        f"{result.bad_packets} malformed packet(s) skipped; {hint}"
    )


@mac_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Unassigned MACs seen asking for DHCP, in order of arrival."""
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_macs import list_sightings

    db = open_database(cli_context(ctx).state_dir)
    try:
        sightings = list_sightings(db)
    finally:
        db.close()
    if as_json:
        print_json([s.as_dict() for s in sightings])
        return
    rows = [
        (i, s.mac, s.interface, s.message_type, s.client_arch or "-", s.seen_count, s.first_seen.isoformat())
        for i, s in enumerate(sightings, start=1)
    ]
    console.print(
        table(
            f"{len(rows)} unassigned MAC(s)",
            ["#", "MAC", "interface", "last message", "arch", "seen", "first seen"],
            rows,
        )
    )


@mac_app.command("assign")
def assign(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node, e.g. node01.")],
    mac: Annotated[str, typer.Argument(help="Its private NIC's MAC, e.g. 52:54:00:12:34:56.")],
    as_json: JsonOption = False,
) -> None:
    """Give one node its MAC (and its DHCP entry at once)."""
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_macs import assign_macs

    db = open_database(cli_context(ctx).state_dir)
    try:
        assignments = assign_macs(db, [(node, mac, "mac assign")])
    finally:
        db.close()
    _sync_nodes(ctx, assignments)
    _print_assignments(assignments, as_json)


@mac_app.command("assign-all")
def assign_all(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(help="Nodes to receive the collected MACs, e.g. node[01-16].")],
    as_json: JsonOption = False,
) -> None:
    """Collected MACs, in order of arrival, to the nodes of NODESET without a MAC, in node-set order."""
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_macs import assign_all as run

    db = open_database(cli_context(ctx).state_dir)
    try:
        assignments = run(db, nodeset)
    finally:
        db.close()
    _sync_nodes(ctx, assignments)
    _print_assignments(assignments, as_json)


@mac_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with lines node,mac.")],
    as_json: JsonOption = False,
) -> None:
    """Assign MACs from a CSV file (node,mac); every line is checked first, a bad one changes nothing."""
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_macs import import_csv

    db = open_database(cli_context(ctx).state_dir)
    try:
        assignments = import_csv(db, file)
    finally:
        db.close()
    _sync_nodes(ctx, assignments)
    _print_assignments(assignments, as_json)


@mac_app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file to write (node,mac).")],
    as_json: JsonOption = False,
) -> None:
    """Write every node's private MAC to a CSV file (node,mac)."""
    from haoscar.db.session import open_database
    from haoscar.provision.netboot_macs import export_csv

    db = open_database(cli_context(ctx).state_dir)
    try:
        count = export_csv(db, file)
    finally:
        db.close()
    if as_json:
        print_json({"file": str(file), "nodes": count})
        return
    console.print(f"{count} MAC(s) written to {file}")


def register(app: typer.Typer) -> None:
    app.add_typer(mac_app, name="mac")
