"""``haoscar repl ...``: head-node data replication on its own (the HA daemon drives the same manager), its
status, and ``haoscar bench replication``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, print_json, table
from haoscar.commands.env import Env

repl_app = typer.Typer(help="Replication of files and the database from the active head to the standby.",
                       no_args_is_help=True)  # fmt: skip


@repl_app.command("run")
def run(
    ctx: typer.Context,
    *,
    node: Annotated[str, typer.Option("--node", help="This head: its host name, or primary / standby.")],
    spec_file: Annotated[Path, typer.Option("--spec", help="The cluster spec (its ha: section).")],
    role: Annotated[str, typer.Option("--role", help="source (active head) or target (standby).")],
    catch_up: Annotated[
        bool, typer.Option("--catch-up", help="As target: first pull from the peer, keeping divergent files.")
    ] = False,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="Overrides ha.key_file.")] = None,
) -> None:
    """Run replication in the foreground in one role until SIGTERM (events on stderr, status in the state dir)."""
    from haoscar.commands import replication

    request = replication.RunReplication(
        node=node, spec_file=spec_file, role=role, catch_up=catch_up, key_file=key_file
    )
    raise typer.Exit(replication.run(Env(cli_context(ctx).state_dir), request))


def _ago(ts: Any) -> str:
    if ts is None:
        return "never"
    return f"{max(0.0, time.time() - float(ts)):.0f} s ago"


@repl_app.command("status")
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Lag, files and bytes pending, last full pass, errors, and whether the standby's copy is stale."""
    from haoscar.commands import replication

    report = replication.status(Env(cli_context(ctx).state_dir))
    if as_json:
        print_json(report.as_dict())
        return
    current = report.data
    stale = f"STALE: {current['stale_reason']}" if current["standby_stale"] else "no"
    db = "connected" if current["db_connected"] else "NOT connected"
    rows = [
        ("node / role / peer", f"{current['node']} / {current['role']} / {current['peer']}"),
        ("lag", f"{current['lag_s']:.2f} s"),
        ("files pending", current["files_pending"]),
        ("bytes pending", current["bytes_pending"]),
        ("last full pass", _ago(current["last_full_pass"])),
        ("database", f"LSN {current['db_lsn']}, {db}"),
        ("shipped", f"{current['files_shipped']} paths, {current['bytes_shipped']} bytes"),
        ("stale", stale),
        ("last error", current["last_error"] or "-"),
        ("status written", f"{report.age_s:.1f} s ago"),
    ]
    # Reasons and errors are free text (paths, peers' messages): printed as they are, not as markup.
    console.print(table("replication", ("", "value"), [(name, escape(str(value))) for name, value in rows]))


@repl_app.command("may-take-over")
def may_take_over_cmd(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Allow it although this head's data is stale.")] = False,
) -> None:
    """Whether this head's replicated data allows it to become active: exit 0 yes, 1 refused (stale)."""
    from haoscar.commands import replication

    verdict = replication.may_take_over(Env(cli_context(ctx).state_dir), replication.TakeOverCheck(force=force))
    if verdict.allowed and not verdict.forced:
        console.print(verdict.why, markup=False)
        return
    console.print(f"[bold red]{escape(verdict.why)}[/]", highlight=False, soft_wrap=True)
    if not verdict.allowed:
        raise typer.Exit(1)


@bench_app.command("replication")
def bench_replication(
    ctx: typer.Context,
    *,
    seconds: Annotated[float, typer.Option("--seconds", help="Length of the steady-state run.")] = 30.0,
    rate: Annotated[float, typer.Option("--rate", help="Files written per second on the active head.")] = 100.0,
    db_changes: Annotated[int, typer.Option("--db-changes", help="Database changes per run.")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON result.")] = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Two heads in a lab: file lag p50/p99 at a steady write rate, then a crash of the active head in the middle
    of a second run, counting acknowledged files and database changes missing on the standby."""
    from haoscar.scenarios.bench.replication import run_bench

    result = run_bench(cli_context(ctx).state_dir, seconds=seconds, rate=rate, db_changes=db_changes,
                       progress=not as_json)  # fmt: skip
    keep("replication", result, save, out, note)
    print_json(result)


def register(app: typer.Typer) -> None:
    app.add_typer(repl_app, name="repl")
