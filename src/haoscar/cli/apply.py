"""``haoscar spec apply FILE``: load a cluster spec into the database (registered on the ``spec`` group)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, print_json, table, warn
from haoscar.cli.spec import spec_app
from haoscar.cli.user import resync_after_node_change


@spec_app.command("apply")
def apply(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The cluster spec to load, e.g. examples/lab.yaml.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete nodes that an earlier spec defined and this one no longer has.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load a spec into the cluster database; applying it again changes nothing."""
    from haoscar.commands.apply import ApplySpec, spec_apply

    report = spec_apply(cli_env(ctx), ApplySpec(file, prune=prune))
    if report.added or report.changed or report.removed:
        resync_after_node_change(cli_env(ctx))  # /etc/hosts and known hosts on the installed nodes (docs/accounts.md)
    if as_json:
        print_json(report.as_dict())
        return
    folded = report.folded()
    rows = [
        ("added", len(report.added), folded["added"]),
        ("changed", len(report.changed), folded["changed"]),
        ("unchanged", len(report.unchanged), folded["unchanged"]),
        ("removed", len(report.removed), folded["removed"]),
        ("no longer in the spec", len(report.removed_pending), folded["removed_pending"]),
    ]
    console.print(table(f"{file} applied", ["nodes", "count", "names"], rows, keys=["names"]))
    if report.other:
        console.print("also changed: " + ", ".join(report.other))
    if not report.wrote:
        console.print("nothing changed: the database already matches the spec")
    if report.removed_pending:
        warn(f"{folded['removed_pending']} kept; apply with --prune to delete them")


def register(app: typer.Typer) -> None:
    """The command is registered on ``spec_app`` at import; nothing to add to the root."""
