"""``haoscar user add|delete|list`` (cluster-wide accounts) and ``haoscar cluster sync`` (the cluster's state pushed
to every host), docs/accounts.md.

What a host said passes through ``wire_text`` before it reaches the terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.cluster import cluster_app
from haoscar.cli.context import cli_env
from haoscar.cli.render import console, err_console, flags, print_json, table, warn
from haoscar.cli.wire_text import wire_text

if TYPE_CHECKING:
    from haoscar.commands.cluster_sync import SyncReport
    from haoscar.commands.env import Env

user_app = typer.Typer(help="Cluster users: the same account on both heads and every node.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ConnectOption = Annotated[
    float, typer.Option("--connect-timeout", "-t", help="Seconds to connect before a host is unreachable.")
]
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The user's login name.")]


def render_sync(report: SyncReport) -> None:
    """One row per host on stderr (what changed there, or why it failed)."""
    failed = len(report.failed)
    title = f"{len(report.hosts)} hosts synced in {report.seconds:.1f} s: " + (
        f"{failed} failed, they get it at the next `haoscar cluster sync`" if failed else "all ok"
    )
    rows = [
        (h.host, "ok" if h.ok else "FAILED", wire_text(h.error if not h.ok else "; ".join(h.changes) or "unchanged"))
        for h in report.hosts
    ]
    err_console.print(table(title, ["host", "status", "detail"], rows, keys=["host", "status"]))


@user_app.command("add")
def add(
    ctx: typer.Context,
    name: NameArgument,
    *,
    uid: Annotated[int | None, typer.Option(help="The uid (default: the next free one from 2000).")] = None,
    gid: Annotated[int | None, typer.Option(help="The gid of the user's group (default: the uid if free).")] = None,
    group: Annotated[str | None, typer.Option(help="The primary group (default: one of the user's name).")] = None,
    shell: Annotated[str, typer.Option(help="The login shell.")] = "/bin/bash",
    comment: Annotated[str, typer.Option(help="The GECOS field, e.g. the full name.")] = "",
    ssh_key: Annotated[
        Path | None, typer.Option(metavar="PUBKEYFILE", help="Public keys the user may also log in with.")
    ] = None,
    connect_timeout: ConnectOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Add a user on every host with the same uid/gid; its home on the export with a key pair for ssh between nodes.

    Exit status 0 when every host has it, 1 when a host could not be reached (the others have it), 2 for bad input.
    """
    from haoscar.commands.users import UserAdd, user_add

    request = UserAdd(name, uid, gid, group, shell, comment, ssh_key, connect_timeout=connect_timeout)
    with flags(name="NAME", ssh_key="--ssh-key"):
        report = user_add(cli_env(ctx), request)
    if as_json:
        print_json(report.as_dict())
    else:
        u = report.user
        console.print(f"added user {u.name}: uid {u.uid}, group {u.group} ({u.gid}), home {u.home}")
        render_sync(report.sync)
    raise typer.Exit(report.exit_status)


@user_app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArgument,
    *,
    keep_home: Annotated[bool, typer.Option("--keep-home", help="Keep the user's home on the export.")] = False,
    connect_timeout: ConnectOption = 10.0,
    as_json: JsonOption = False,
) -> None:
    """Delete a user on every host (and its home, unless --keep-home).

    Exit status 0 when every host dropped it, 1 when a host could not be reached (it does at the next sync), 2 for an
    unknown user.
    """
    from haoscar.commands.users import UserDelete, user_delete

    with flags(name="NAME"):
        report = user_delete(cli_env(ctx), UserDelete(name, keep_home, connect_timeout))
    if as_json:
        print_json(report.as_dict())
    else:
        console.print(f"deleted user {report.user.name}: " + "; ".join(report.home))
        render_sync(report.sync)
    raise typer.Exit(report.exit_status)


@user_app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The cluster's users with their ids, group, shell and home."""
    from haoscar.commands.users import ListUsers, user_list

    rows = user_list(cli_env(ctx), ListUsers())
    if as_json:
        print_json([row.as_dict() for row in rows])
        return
    cells = [(r.name, str(r.uid), str(r.gid), r.group, r.shell, r.home, r.comment) for r in rows]
    columns = ["name", "uid", "gid", "group", "shell", "home", "comment"]
    console.print(table(f"{len(rows)} users", columns, cells, keys=["name", "uid", "gid"]))


@cluster_app.command("sync")
def sync(
    ctx: typer.Context,
    nodes: Annotated[
        str | None, typer.Argument(metavar="[NODESET]", help="Only these hosts (default: both heads and every node).")
    ] = None,
    *,
    connect_timeout: ConnectOption = 10.0,
    fanout: Annotated[int, typer.Option("--fanout", "-f", help="ssh connections at once.")] = 64,
    as_json: JsonOption = False,
) -> None:
    """Push the cluster's state to every host: users and groups, /etc/hosts, ssh known hosts, root's cluster key.

    Exit status 0 when every host has it, 1 when any failed or could not be reached, 2 for bad input.
    """
    from haoscar.commands.cluster_sync import SyncRequest, cluster_sync

    with flags(nodes="NODESET"):
        report = cluster_sync(cli_env(ctx), SyncRequest(nodes, connect_timeout, fanout))
    if as_json:
        print_json(report.as_dict())
    else:
        render_sync(report)
    raise typer.Exit(report.exit_status)


def resync_after_node_change(env: Env) -> None:
    """Run by the commands that change nodes, after they did: the sync to the heads and the installed nodes
    (``commands.cluster_sync.resync_after_node_change``); a host that fails is a warning, never the command's
    failure."""
    from haoscar.commands.cluster_sync import resync_after_node_change as resync

    try:
        report = resync(env)
    except Exception as exc:  # the nodes changed in the database all the same: say so, never fail the command
        warn(f"cluster sync after the node change failed ({exc}); run `haoscar cluster sync`")
        return
    if report is None:
        return
    if report.failed:
        names = ", ".join(report.failed)
        warn(f"cluster sync after the node change: {names} not reached; run `haoscar cluster sync` when they are up")
    else:
        err_console.print(f"cluster sync: {len(report.hosts)} hosts have the new /etc/hosts and keys")


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
