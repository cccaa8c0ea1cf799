"""``haoscar pkg install|remove PKG... --nodes NODESET``: packages in the nodes' image (a new version) and on the
running nodes through the parallel shell (docs/packages.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, err_console, flags, print_json, table
from haoscar.cli.wire_text import wire_text

if TYPE_CHECKING:
    from haoscar.commands.packages import PackagesReport

pkg_app = typer.Typer(
    help="Packages on running nodes and in their image (OSCAR's Select/Configure Packages).", no_args_is_help=True
)

PackagesArgument = Annotated[list[str], typer.Argument(metavar="PKG...", help="Debian package names.")]
NodesOption = Annotated[str, typer.Option("--nodes", "-w", metavar="NODESET", help="node[01-16], @compute, ...")]
ImageOption = Annotated[
    str | None, typer.Option("--image", help="The image to change (default: the one the nodes are installed from).")
]
ImageOnlyOption = Annotated[bool, typer.Option("--image-only", help="Only make the new image version.")]
NodesOnlyOption = Annotated[
    bool, typer.Option("--nodes-only", help="Only the nodes (install: with the .deb files an earlier run kept).")
]
FanoutOption = Annotated[int, typer.Option("--fanout", "-f", help="ssh connections at once.")]
ConnectOption = Annotated[
    float, typer.Option("--connect-timeout", "-t", help="Seconds to connect before a node is unreachable.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="The image version and each node's end, as JSON.")]

_FLAGS = {"packages": "PKG", "nodes": "--nodes"}


def _render(report: PackagesReport, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    what = " ".join(report.packages)
    if report.version is not None:
        made = "new version" if report.new_version else "version"
        console.print(f"image {report.image} {made} {report.version}: {report.action} {what}", highlight=False)
    if not report.results:
        return
    failed = sum(not r.ok for r in report.results)
    title = f"{report.action} {what} on {len(report.results)} nodes: " + (f"{failed} failed" if failed else "all ok")
    rows = [(r.node, r.state, wire_text(r.reason) if r.reason else "") for r in report.results]
    err_console.print(table(title, ["node", "state", "reason"], rows, keys=["node"]))


@pkg_app.command("install", no_args_is_help=True)
def install(
    ctx: typer.Context,
    packages: PackagesArgument,
    *,
    nodes: NodesOption = "",
    image: ImageOption = None,
    image_only: ImageOnlyOption = False,
    nodes_only: NodesOnlyOption = False,
    fanout: FanoutOption = 64,
    connect_timeout: ConnectOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Install packages into a new version of the nodes' image and on the nodes (offline, from its .deb files).

    Exit status 0 when every node has them, 1 when a node failed or was unreachable (the image version is kept),
    2 for bad input (nothing changed).
    """
    from haoscar.commands.packages import PackagesRequest, pkg_install

    request = PackagesRequest(packages, nodes, image, image_only, nodes_only, fanout, connect_timeout)
    with flags(**_FLAGS):
        report = pkg_install(cli_env(ctx), request)
    _render(report, as_json)
    raise typer.Exit(report.exit_status)


@pkg_app.command("remove", no_args_is_help=True)
def remove(
    ctx: typer.Context,
    packages: PackagesArgument,
    *,
    nodes: NodesOption = "",
    image: ImageOption = None,
    image_only: ImageOnlyOption = False,
    nodes_only: NodesOnlyOption = False,
    fanout: FanoutOption = 64,
    connect_timeout: ConnectOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Remove packages from a new version of the nodes' image and from the nodes.

    Exit status 0 when no node has them any more, 1 when a node failed or was unreachable, 2 for bad input.
    """
    from haoscar.commands.packages import PackagesRequest, pkg_remove

    request = PackagesRequest(packages, nodes, image, image_only, nodes_only, fanout, connect_timeout)
    with flags(**_FLAGS):
        report = pkg_remove(cli_env(ctx), request)
    _render(report, as_json)
    raise typer.Exit(report.exit_status)


def register(app: typer.Typer) -> None:
    app.add_typer(pkg_app, name="pkg")
