"""The ``db`` command group: the cluster database's schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, print_json, table

GROUP = "db"
db_app = typer.Typer(help="The cluster database: schema upgrades and status.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create the database if needed and migrate its schema to the latest revision."""
    from haoscar.commands.database import UpgradeDatabase, db_upgrade

    done = db_upgrade(cli_env(ctx), UpgradeDatabase())
    if done.changed:
        console.print(f"{done.path}: schema upgraded from {done.before or 'nothing'} to [bold]{done.now}[/] (head)")
    else:
        console.print(f"{done.path}: schema already at revision [bold]{done.now}[/] (head)")


@db_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Show the database file, its schema revision and the latest one (exit 1 when an upgrade is pending)."""
    from haoscar.commands.database import ShowDatabase, db_status

    state = db_status(cli_env(ctx), ShowDatabase())
    if as_json:
        print_json(state.as_dict())
    else:
        verdict = (
            "[green]up to date[/]" if state.up_to_date else f"[yellow]upgrade pending: run `haoscar {GROUP} upgrade`[/]"
        )
        row = (state.path, state.current or "(none)", state.head, verdict)
        console.print(table("Cluster database", ["file", "current", "head", "state"], [row], keys=["file"]))
    if not state.up_to_date:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name=GROUP)
