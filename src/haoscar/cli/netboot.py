"""``haoscar netboot ...``: regenerate network-boot files, switch nodes between netboot and localboot, serve them."""

from __future__ import annotations

from typing import Annotated

import typer

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, flags, print_json, warn
from haoscar.commands.env import Env

netboot_app = typer.Typer(
    help="Network boot (OSCAR's Setup Network Boot): DHCP entries, iPXE scripts, the boot server.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def print_sync(report_dict: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(report_dict)
        return
    console.print(
        f"netboot sync: {report_dict['nodes']} nodes, {report_dict['written']} files written, "
        f"{report_dict['unchanged']} unchanged, {report_dict['removed']} removed "
        f"in {report_dict['seconds']} s"
    )
    if report_dict["reloaded_pid"] is not None:
        console.print(f"dnsmasq (pid {report_dict['reloaded_pid']}) reloaded with SIGHUP")
    if report_dict["restart_needed"]:
        warn("dnsmasq.conf changed; dnsmasq reads it only at start: run haoscar dhcp configure to restart it")


def _env(ctx: typer.Context) -> Env:
    return Env(cli_context(ctx).state_dir)


@netboot_app.command("sync")
def sync(
    ctx: typer.Context,
    nodeset: Annotated[str | None, typer.Argument(help="Only these nodes, e.g. node[01-04] (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Regenerate dnsmasq's config, per-node DHCP entries and iPXE scripts from the database; reload dnsmasq."""
    from haoscar.commands import netboot

    with _env(ctx) as env:
        report = netboot.sync(env, netboot.SyncNetboot(nodeset=nodeset))
    print_sync(report.as_dict(), as_json)


def _set_boot_mode(ctx: typer.Context, nodeset: str, mode: str, as_json: bool) -> None:
    from haoscar.commands import netboot

    with _env(ctx) as env:
        result = netboot.set_boot_mode(env, netboot.SetBootMode(nodeset=nodeset, mode=mode))
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"{len(result.changed)} node(s) now {mode}, {len(result.unchanged)} already were")
    if result.sync is not None:
        print_sync(result.sync.as_dict(), False)


@netboot_app.command("enable")
def enable(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(help="Nodes to network-boot, e.g. node[01-04].")],
    as_json: JsonOption = False,
) -> None:
    """Network-boot these nodes (boot mode netboot): DHCP gives them the iPXE boot file."""
    _set_boot_mode(ctx, nodeset, "netboot", as_json)


@netboot_app.command("disable")
def disable(
    ctx: typer.Context,
    nodeset: Annotated[str, typer.Argument(help="Nodes to boot from their local disk, e.g. node[01-04].")],
    as_json: JsonOption = False,
) -> None:
    """Boot these nodes from their local disk (boot mode localboot): an address, but no boot file."""
    _set_boot_mode(ctx, nodeset, "localboot", as_json)


@netboot_app.command("serve")
def serve(
    ctx: typer.Context,
    bind: Annotated[list[str], typer.Option("--bind", help="Address to listen on (repeatable), e.g. 198.18.0.1.")],
    port: Annotated[int, typer.Option(help="TCP port.", min=1, max=65535)] = 8470,
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", help="A limit NAME=VALUE (repeatable), e.g. idle_timeout=10; see docs/netboot.md."),
    ] = None,
    save_limits: Annotated[bool, typer.Option("--save-limits", help="Store the --limit values as defaults.")] = False,
) -> None:
    """Serve iPXE scripts, kernels, initrds and node records over HTTP until interrupted."""
    from haoscar.commands import netboot
    from haoscar.errors import UserError

    limits: dict[str, str] = {}
    for item in limit or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--limit: {item!r} is not NAME=VALUE, e.g. --limit idle_timeout=10")
        limits[name.strip()] = value.strip()
    with _env(ctx) as env, flags(binds="--bind", limits="--limit"):
        netboot.serve(env, netboot.ServeBoot(binds=bind, port=port, limits=limits, save_limits=save_limits))


@bench_app.command("netboot-sync")
def bench_netboot_sync(
    nodes: Annotated[int, typer.Option("--nodes", help="How many nodes to define.", min=1)] = 10000,
    as_json: JsonOption = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Full regeneration of DHCP / iPXE files for N nodes and a one-node change (targets 2 s and 50 ms)."""
    from haoscar.scenarios.bench.netboot_sync import run_bench

    result = run_bench(nodes)
    keep("netboot-sync", result, save, out, note)
    if as_json:
        print_json(result)
        return
    console.print(
        f"{nodes} nodes: full sync {result['full_sync_s']} s (target <= 2 s), "
        f"one-node change {result['one_node_sync_ms']} ms (target <= 50 ms), "
        f"monolithic hostsfile {result['monolithic_hostsfile_s']} s"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(netboot_app, name="netboot")
