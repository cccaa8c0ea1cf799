"""``haoscar exec``, ``haoscar copy`` and ``haoscar groups``: the parallel shell (C3's cexec / cpush, run by
ClusterShell) and the node groups ClusterShell's ``clush -g`` reads through its upcalls (docs/exec.md).

Every byte a node printed is network text: each line passes through ``wire_text`` before it reaches the terminal.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, err_console, flags, print_json, table
from haoscar.cli.wire_text import wire_text

if TYPE_CHECKING:
    from haoscar.commands.exec import ExecReport, Fold, GroupsReport

NodesArgument = Annotated[str, typer.Argument(metavar="NODESET", help="Nodes: node[01-16], @compute, @*, ...")]
FanoutOption = Annotated[int, typer.Option("--fanout", "-f", help="ssh connections at once (clush's default).")]
ConnectOption = Annotated[
    float, typer.Option("--connect-timeout", "-t", help="Seconds to connect before a node is unreachable.")
]
CommandTimeoutOption = Annotated[
    float, typer.Option("--command-timeout", "-u", help="Seconds the command may run on a node (0: no limit).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Per node: output, exit code or error, as JSON.")]

_RULE = "-" * 15


def _line(text: str) -> str:
    # Tabs kept as spaces (wire_text would mark them), empty lines kept empty (it would print "-").
    return wire_text(text.expandtabs()) if text else ""


def _print_folds(folds: list[Fold], *, stderr: bool) -> None:
    where = err_console if stderr else console
    for fold in folds:
        label = f"{fold.nodes} (stderr)" if stderr else fold.nodes
        where.print(f"{_RULE}\n{wire_text(label)}\n{_RULE}", highlight=False)
        for text in fold.text.split("\n"):
            where.print(_line(text), highlight=False, soft_wrap=True)


def render_report(report: ExecReport, as_json: bool) -> None:
    """``clush -b``: identical outputs folded under their node set on stdout; node errors and the summary of how
    each node ended on stderr, so a pipe gets only what the nodes printed."""
    if as_json:
        print_json(report.as_dict())
        return
    _print_folds(report.outputs(), stderr=False)
    _print_folds(report.errors(), stderr=True)
    failed = len(report.failed)
    title = f"{len(report.results)} nodes in {report.seconds:.2f} s: " + (f"{failed} failed" if failed else "all ok")
    rows = [
        (wire_text(nodes), status, wire_text(reason) if reason else "") for nodes, status, reason in report.summary()
    ]
    err_console.print(table(title, ["nodes", "status", "reason"], rows, keys=["nodes"]))


def exec_(
    ctx: typer.Context,
    nodes: NodesArgument,
    command: Annotated[
        list[str], typer.Argument(metavar="-- CMD...", help="The command line, run by the node's shell.")
    ],
    *,
    fanout: FanoutOption = 64,
    connect_timeout: ConnectOption = 10.0,
    command_timeout: CommandTimeoutOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Run a command on many nodes over ssh with the cluster key (ClusterShell); identical outputs are folded.

    Exit status 0 when every node succeeded, 1 when any failed or could not be reached, 2 for bad input.
    """
    from haoscar.commands.exec import ExecRequest, exec_command

    # Words joined as clush joins them: the remote shell reads the line (quotes, $VAR, pipes work there).
    request = ExecRequest(nodes, " ".join(command), fanout, connect_timeout, command_timeout)
    with flags(nodes="NODESET", command="CMD"):
        report = exec_command(cli_env(ctx), request)
    render_report(report, as_json)
    raise typer.Exit(report.exit_status)


def copy(
    ctx: typer.Context,
    nodes: NodesArgument,
    source: Annotated[Path, typer.Argument(metavar="SRC", help="A file or a directory here.")],
    dest: Annotated[
        str | None, typer.Argument(metavar="DEST", help="Where on the nodes (default: SRC's path).")
    ] = None,
    *,
    preserve: Annotated[bool, typer.Option("--preserve", "-p", help="Keep modes and times (scp -p).")] = False,
    fanout: FanoutOption = 64,
    connect_timeout: ConnectOption = 10.0,
    command_timeout: CommandTimeoutOption = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Copy a file or a directory to many nodes (C3's cpush) with ClusterShell's copy over scp.

    Exit status 0 when every node has it, 1 when any failed or could not be reached, 2 for bad input.
    """
    from haoscar.commands.exec import CopyRequest, copy_files

    request = CopyRequest(nodes, source, dest, preserve, fanout, connect_timeout, command_timeout)
    with flags(nodes="NODESET", source="SRC", dest="DEST"):
        report = copy_files(cli_env(ctx), request)
    render_report(report, as_json)
    raise typer.Exit(report.exit_status)


groups_app = typer.Typer(
    help="Node groups from the database (@compute, client groups, image-NAME), and ClusterShell's upcalls.",
    no_args_is_help=True,
)


def _groups(ctx: typer.Context, group: str | None = None, node: str | None = None) -> GroupsReport:
    from haoscar.commands.exec import ShowGroups, show_groups

    with flags(group="GROUP", node="NODE"):
        return show_groups(cli_env(ctx), ShowGroups(group, node))


@groups_app.command("show")
def groups_show(
    ctx: typer.Context,
    group: Annotated[str | None, typer.Argument(metavar="GROUP", help="Only this group.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the groups as JSON.")] = False,
) -> None:
    """Every node group with its nodes (what `@group` means to `haoscar exec` and `clush -g`)."""
    report = _groups(ctx, group)
    if as_json:
        print_json(report.as_dict())
        return
    folded = report.as_dict()["groups"]
    rows = [(f"@{name}", len(nodes), folded[name] or "-") for name, nodes in report.groups.items()]
    console.print(table(f"{len(rows)} groups", ["group", "count", "nodes"], rows, keys=["group", "nodes"]))


# ClusterShell's upcalls (groups.conf: map, list, all, reverse): plain lines, nothing else on stdout.


@groups_app.command("map")
def groups_map(ctx: typer.Context, group: Annotated[str, typer.Argument(metavar="GROUP")]) -> None:
    """Upcall: the nodes of GROUP as one folded node set (exit 2 for an unknown group)."""
    sys.stdout.write("".join(f"{nodes}\n" for nodes in _groups(ctx, group).as_dict()["groups"].values()))


@groups_app.command("list")
def groups_list(ctx: typer.Context) -> None:
    """Upcall: every group name, one a line."""
    sys.stdout.write("".join(f"{name}\n" for name in _groups(ctx).groups))


@groups_app.command("all")
def groups_all(ctx: typer.Context) -> None:
    """Upcall: every node of the database as one folded node set."""
    sys.stdout.write(_groups(ctx).as_dict()["all"] + "\n")


@groups_app.command("reverse")
def groups_reverse(ctx: typer.Context, node: Annotated[str, typer.Argument(metavar="NODE")]) -> None:
    """Upcall: the groups holding NODE, one a line."""
    sys.stdout.write("".join(f"{name}\n" for name in _groups(ctx, node=node).groups))


def register(app: typer.Typer) -> None:
    app.command("exec", no_args_is_help=True)(exec_)
    app.command("copy", no_args_is_help=True)(copy)
    app.add_typer(groups_app, name="groups")
