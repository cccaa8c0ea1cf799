"""``haoscar cluster``: the cluster as a whole. ``cluster test`` is OSCAR's *Test Cluster Setup*
(docs/cluster-test.md); other modules add their commands to ``cluster_app`` (``cli/user.py`` adds ``cluster sync``).

Every reason a node gave is network text: it passes through ``wire_text`` before it reaches the terminal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, flags, print_json, table
from haoscar.cli.wire_text import wire_text

if TYPE_CHECKING:
    from haoscar.commands.cluster_test import ClusterTestReport

cluster_app = typer.Typer(help="The cluster as a whole: test its setup, keep nodes in step.", no_args_is_help=True)


def render_test(report: ClusterTestReport, as_json: bool) -> None:
    """One row per check and node (names never cut), then what failed in one line; or the report as JSON."""
    if as_json:
        print_json(report.as_dict())
        return
    rows = [
        (row.check, wire_text(row.node), "pass" if row.ok else "FAIL", wire_text(row.reason)) for row in report.rows
    ]
    verdict = "all passed" if report.ok else f"{len(report.failed)} of {len(report.rows)} failed"
    title = (
        f"cluster test of {wire_text(report.nodes)} ({', '.join(report.checks)}) in {report.seconds:.1f} s: {verdict}"
    )
    console.print(table(title, ["check", "node", "result", "reason"], rows, keys=["check", "node", "result"]))


@cluster_app.command("test")
def test(
    ctx: typer.Context,
    nodes: Annotated[
        str, typer.Argument(metavar="NODESET", help="Nodes to test: node[01-16], @rack1, ...")
    ] = "@compute",
    *,
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check", "-c", help="Run only this check (repeatable): resolve, home, time, slurm, mpi; ssh always runs."
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Write /home as this cluster user (default: the first one; root: as root)."),
    ] = None,
    home: Annotated[str, typer.Option("--home", help="The exported /home on this head and on the nodes.")] = "/home",
    time_threshold: Annotated[
        float, typer.Option("--time-threshold", help="Seconds a node's clock may be off this head's.")
    ] = 1.0,
    connect_timeout: Annotated[
        float, typer.Option("--connect-timeout", "-t", help="Seconds to connect before a node is unreachable.")
    ] = 5.0,
    command_timeout: Annotated[
        float, typer.Option("--command-timeout", "-u", help="Seconds each step may take on a node.")
    ] = 30.0,
    job_timeout: Annotated[
        float, typer.Option("--job-timeout", help="Seconds the Slurm job and the MPI run may take.")
    ] = 60.0,
    fanout: Annotated[int, typer.Option("--fanout", "-f", help="ssh connections at once.")] = 64,
    job_wait: Annotated[
        float,
        typer.Option("--job-wait", help="Seconds the Slurm job may wait for its nodes (busy ones) before it fails."),
    ] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="The rows as JSON.")] = False,
) -> None:
    """Test the cluster's setup (OSCAR's Test Cluster Setup): ssh, name resolution, /home, time, Slurm, MPI.

    Each check is a row per node with pass or fail and the reason. Exit status 0 when every row passed, 1 when any
    failed, 2 for bad input (nothing run).
    """
    from haoscar.commands.cluster_test import ClusterTestRequest, cluster_test

    request = ClusterTestRequest(
        nodes,
        tuple(check or ()),
        user,
        home,
        time_threshold,
        connect_timeout,
        command_timeout,
        job_timeout,
        fanout,
        job_wait,
    )
    with flags(nodes="NODESET", checks="--check"):
        report = cluster_test(cli_env(ctx), request)
    render_test(report, as_json)
    raise typer.Exit(report.exit_status)


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
