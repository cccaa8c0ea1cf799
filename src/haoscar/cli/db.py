"""``haoscar db ...``: the cluster database's schema (Alembic migrations)."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table

db_app = typer.Typer(help="The cluster database: schema upgrades and status.", no_args_is_help=True)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create the database if needed and migrate its schema to the latest revision."""
    from haoscar.db.migrate import schema_status
    from haoscar.db.session import open_database

    db = open_database(cli_context(ctx).state_dir, upgrade=False)
    try:
        before = schema_status(db.engine).current
        now = db.upgrade()
    finally:
        db.close()
    if before == now:
        console.print(f"{db.path}: schema already at revision [bold]{now}[/] (head)")
    else:
        console.print(f"{db.path}: schema upgraded from {before or 'nothing'} to [bold]{now}[/] (head)")


@db_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Show the database file, its schema revision and the latest one (exit 1 when an upgrade is pending)."""
    from haoscar.db.migrate import schema_status
    from haoscar.db.session import DB_FILE, Database

    path = cli_context(ctx).state_dir / DB_FILE
    current: str | None = None
    if path.exists():
        db = Database(path.parent)
        try:
            state = schema_status(db.engine)
        finally:
            db.close()
        current, head = state.current, state.head
    else:
        from haoscar.db.migrate import head_revision

        head = head_revision()
    up_to_date = current == head
    if as_json:
        print_json(
            {"database": str(path), "exists": path.exists(), "current": current, "head": head, "up_to_date": up_to_date}
        )
    else:
        verdict = "[green]up to date[/]" if up_to_date else "[yellow]upgrade pending: run `haoscar db upgrade`[/]"
        console.print(
            table(
                "Cluster database", ["file", "current", "head", "state"], [(path, current or "(none)", head, verdict)]
            )
        )
    if not up_to_date:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
