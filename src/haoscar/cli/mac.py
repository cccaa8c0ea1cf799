"""``haoscar mac ...``: OSCAR's Collect MAC Address, Assign MAC to Node, Assign All, Import/Export MACs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import RenderableType

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table
from haoscar.cli.wire_text import wire_text
from haoscar.commands.env import Env

if TYPE_CHECKING:
    from haoscar.commands.macs import Assigned, Seen

mac_app = typer.Typer(help="Learn client MAC addresses and give them to nodes.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
COLLECT_COLUMNS = ["#", "MAC", "message", "arch", "user class", "host name", "seen", "assigned to"]


def _env(ctx: typer.Context) -> Env:
    return Env(cli_context(ctx).state_dir)


def _print_assigned(result: Assigned, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict())
        return
    rows = [(a.node, a.mac) for a in result.assignments]
    console.print(table(f"{len(rows)} MAC(s) assigned", ["node", "MAC"], rows))


class CollectView:
    """The rows of ``mac collect``'s live table, one per MAC, updated as its client asks again.

    Every cell a client chose (its MAC as sent, message, arch, user class, host name) goes through ``wire_text``:
    a DHCP host name ``[/x]`` would otherwise be a Rich closing tag and end the view with an error."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, ...]] = []
        self._index: dict[str, int] = {}

    def add(self, seen: Seen) -> None:
        req = seen.request
        cells = (
            wire_text(req.mac),
            wire_text(req.message_type),
            wire_text(req.client_arch),
            wire_text(req.user_class),
            wire_text(req.hostname),
            str(seen.seen_count),
            wire_text(seen.assigned_to),
        )
        index = self._index.get(req.mac)
        if index is None:
            self._index[req.mac] = len(self.rows)
            self.rows.append((str(len(self.rows) + 1), *cells))
        else:
            # A MAC seen again keeps its place, its first arch / user class and the node it was bound to.
            old = self.rows[index]
            host = cells[4] if cells[4] != "-" else old[5]
            self.rows[index] = (old[0], old[1], cells[1], old[3], old[4], host, cells[5], old[7])

    def render(self) -> RenderableType:
        return table(self.title, COLLECT_COLUMNS, self.rows)


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

    from haoscar.commands import macs

    request = macs.CollectMacs(interface=interface, timeout=timeout, auto=auto, count=count)
    with _env(ctx) as env:
        if as_json:
            result = macs.collect(env, request)
            print_json(result.as_dict())
            return
        view = CollectView(f"MACs seen on {wire_text(interface)} (Ctrl-C or {timeout:g} s to stop)")
        with Live(view.render(), console=console, refresh_per_second=4) as live:

            def on_seen(seen: Seen) -> None:
                view.add(seen)
                live.update(view.render())

            result = macs.collect(env, request, on_seen=on_seen)
    new = len([s for s in result.sightings if s.new])
    hint = f"{len(result.assigned)} bound to nodes" if auto else "assign them with haoscar mac assign-all NODESET"
    console.print(
        f"\n{new} new MAC(s), {result.known} request(s) from known nodes, "
        f"{result.bad_packets} malformed packet(s) skipped; {hint}"
    )


@mac_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Unassigned MACs seen asking for DHCP, in order of arrival."""
    from haoscar.commands import macs

    with _env(ctx) as env:
        sightings = macs.list_sightings(env)
    if as_json:
        print_json([s.as_dict() for s in sightings])
        return
    rows = [
        (
            i,
            wire_text(s.mac),
            wire_text(s.interface),
            wire_text(s.message_type),
            wire_text(s.client_arch),
            s.seen_count,
            s.first_seen.isoformat(),
        )
        for i, s in enumerate(sightings, start=1)
    ]
    columns = ["#", "MAC", "interface", "last message", "arch", "seen", "first seen"]
    console.print(table(f"{len(rows)} unassigned MAC(s)", columns, rows))


@mac_app.command("assign")
def assign(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="The node, e.g. node01.")],
    mac: Annotated[str, typer.Argument(help="Its private NIC's MAC, e.g. 52:54:00:12:34:56.")],
    as_json: JsonOption = False,
) -> None:
    """Give one node its MAC (and its DHCP entry at once)."""
    from haoscar.commands import macs

    with _env(ctx) as env:
        result = macs.assign(env, macs.AssignMac(node=node, mac=mac))
    _print_assigned(result, as_json)


@mac_app.command("assign-all")
def assign_all(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(help="Nodes to receive the collected MACs, e.g. node[01-16].")],
    as_json: JsonOption = False,
) -> None:
    """Collected MACs, in order of arrival, to the nodes of NODESET without a MAC, in node-set order."""
    from haoscar.commands import macs

    with _env(ctx) as env:
        result = macs.assign_all(env, macs.AssignAll(nodeset=nodeset))
    _print_assigned(result, as_json)


@mac_app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV with lines node,mac.")],
    as_json: JsonOption = False,
) -> None:
    """Assign MACs from a CSV file (node,mac); every line is checked first, a bad one changes nothing."""
    from haoscar.commands import macs

    with _env(ctx) as env:
        result = macs.import_csv(env, macs.ImportMacs(file=file))
    _print_assigned(result, as_json)


@mac_app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV file to write (node,mac).")],
    as_json: JsonOption = False,
) -> None:
    """Write every node's private MAC to a CSV file (node,mac)."""
    from haoscar.commands import macs

    with _env(ctx) as env:
        result = macs.export_csv(env, macs.ExportMacs(file=file))
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"{result.nodes} MAC(s) written to {result.file}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(mac_app, name="mac")
