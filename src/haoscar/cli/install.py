"""``haoscar install ...``: watch network installations; ``haoscar netboot build-installer``: make what they boot."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.netboot import netboot_app
from haoscar.cli.render import console, print_json, table

install_app = typer.Typer(
    help="Network installation: live progress of installing nodes, and its settings.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _row_dict(row: Any, now: float) -> dict[str, Any]:
    progress = row.progress
    data: dict[str, Any] = {"node": row.node, "install_state": row.install_state, "detail": row.detail}
    if progress is not None:
        live = progress.as_dict(now)
        data.update(
            stage=live["stage"],
            percent=live["percent"],
            bytes=live["bytes"],
            mb_per_s=live["mb_per_s"],
            elapsed_s=live["elapsed_s"],
            reason=live["reason"],
        )
    else:
        data.update(stage=None, percent=None, bytes=None, mb_per_s=None, elapsed_s=None, reason="")
    return data


def _snapshot(state: Path, nodes: set[str] | None) -> list[dict[str, Any]]:
    from haoscar.db.session import open_database
    from haoscar.provision.install_progress import expire_stalled, monitor_rows

    db = open_database(state)
    try:
        expire_stalled(db, state)
        now = time.monotonic()
        return [_row_dict(row, now) for row in monitor_rows(db, state, nodes)]
    finally:
        db.close()


def _label(row: dict[str, Any]) -> str:
    state = row["install_state"]
    if state == "failed":
        return f"[red]failed: {row['detail']}[/]"
    if state == "installing":
        return f"{row['stage']} {row['mb_per_s'] or 0:.1f} MB/s {row['elapsed_s'] or 0:.0f} s"
    return f"[green]{state}[/] {row['elapsed_s'] or 0:.0f} s" if state == "installed" else state


@install_app.command("monitor")
def monitor(
    ctx: typer.Context,
    nodeset: Annotated[str | None, typer.Argument(help="Only these nodes, e.g. node[01-04] (default: all).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print the current state once and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.2)] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Live progress of every installing node: stage, percent, rate and elapsed time (until none is installing)."""
    from haoscar.spec.nodes import expand_nodeset

    state = cli_context(ctx).state_dir
    nodes = set(expand_nodeset(nodeset)) if nodeset else None
    rows = _snapshot(state, nodes)
    if as_json:
        print_json({"nodes": rows, "installing": sum(r["install_state"] == "installing" for r in rows)})
        return
    if once:
        columns = ["node", "state", "stage", "percent", "MB/s", "elapsed s", "detail"]
        cells = [
            (r["node"], r["install_state"], r["stage"], r["percent"], r["mb_per_s"], r["elapsed_s"], r["detail"])
            for r in rows
        ]
        console.print(table("installations", columns, cells))
        return
    bars = Progress(
        TextColumn("{task.fields[node]:<12}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[label]}"),
        console=console,
    )
    tasks: dict[str, TaskID] = {}
    with bars:
        while True:
            for row in rows:
                label = _label(row)
                percent = row["percent"] or 0
                if row["node"] not in tasks:
                    tasks[row["node"]] = bars.add_task("", total=100, node=row["node"], label=label)
                bars.update(tasks[row["node"]], completed=percent, label=label)
            if not any(r["install_state"] == "installing" for r in rows):
                break
            time.sleep(interval)
            rows = _snapshot(state, nodes)
    if not rows:
        console.print("no node is installing or has installed yet (start one: haoscar netboot enable NODES)")


@install_app.command("configure")
def configure(
    ctx: typer.Context,
    stall_timeout: Annotated[
        float, typer.Option(help="Seconds without a report before an installing node counts as failed.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Settings of network installation."""
    from haoscar.db.session import open_database
    from haoscar.provision.install_progress import set_stall_timeout

    db = open_database(cli_context(ctx).state_dir)
    try:
        value = set_stall_timeout(db, stall_timeout)
    finally:
        db.close()
    if as_json:
        print_json({"stall_timeout": value})
    else:
        console.print(f"installing nodes silent for {value:g} s are marked failed")


@install_app.command("complete")
def complete(
    ctx: typer.Context,
    *,
    spec: Annotated[Path, typer.Option("--spec", help="The cluster spec (heads, witness, services, replication).")],
    ssh_user: Annotated[str, typer.Option(help="The user haoscar logs in as on the standby and the witness.")] = "root",
    ssh_port: Annotated[int, typer.Option(help="Their ssh port.", min=1, max=65535)] = 22,
    start_command: Annotated[
        str,
        typer.Option(
            help="How a daemon is started on a host: {run} is its command line (ha run ... | witness run ...), "
            "{what} ha or witness, {node} the host [default: systemd units haoscar-ha / haoscar-witness]."
        ),
    ] = "",
    wait: Annotated[float, typer.Option(help="Seconds to wait for an active primary and a ready standby.", min=1)] = 60,
    as_json: JsonOption = False,
) -> None:
    """HA-OSCAR's Complete Installation, run on the primary: write the HA configuration (spec, HA key, witness,
    services, replicated paths) on both heads and the witness, start what is not running, wait until the
    primary is active and the standby ready. Running it again changes and restarts nothing that is healthy."""
    from haoscar.commands.install_complete import SYSTEMD_START, complete_installation, http_status, ssh_transports
    from haoscar.commands.standby_clone import mark_up
    from haoscar.spec import load_spec

    state = cli_context(ctx).state_dir
    cluster = load_spec(spec)
    text = spec.read_bytes()
    doors = ssh_transports(cluster, state, ssh_user, ssh_port)
    reader = http_status(cluster.ha.status_port)
    if as_json:
        result = complete_installation(
            cluster, text, doors, status=reader, start_command=start_command or SYSTEMD_START, wait_s=wait
        )
    else:
        with console.status("complete installation") as spinner:
            result = complete_installation(
                cluster,
                text,
                doors,
                status=reader,
                start_command=start_command or SYSTEMD_START,
                wait_s=wait,
                progress=spinner.update,
            )
    if result.ready:
        mark_up(state, cluster.heads.standby.hostname)
    if as_json:
        print_json(result.as_dict())
    else:
        render_complete(result)
    if not result.ready:
        raise typer.Exit(1)


def render_complete(result: Any) -> None:
    """The hosts' files and daemons, then `ha status` of both heads."""
    from haoscar.cli.ha import render_status
    from haoscar.ha.both_heads import both_heads

    rows = [
        (
            h.host,
            h.role,
            ", ".join(h.written) or "-",
            f"{len(h.unchanged)} unchanged" if h.unchanged else "-",
            "started" if h.started else ("running" if h.was_running else "-"),
            h.state or "-",
        )
        for h in result.hosts
    ]
    title = "Complete Installation" + (" (HA key generated)" if result.key_generated else "")
    console.print(table(title, ["host", "role", "written", "files", "daemon", "HA state"], rows))
    if result.local_status is not None:
        render_status(both_heads(result.local_status))
    if result.ready:
        console.print(
            f"[green]HA is up[/]: primary {result.primary_state}, standby {result.standby_state} "
            f"({'changed' if result.changed else 'nothing changed'}, {result.seconds} s)"
        )
    else:
        console.print(
            f"[red]HA is not ready[/]: primary {result.primary_state or 'no answer'}, "
            f"standby {result.standby_state or 'no answer'} after {result.seconds} s; "
            "see `haoscar ha status` and the daemons' logs"
        )


@netboot_app.command("build-installer")
def build_installer_command(
    ctx: typer.Context,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Cache of the kernel package and initramfs (default: STATE/cache/installer)."),
    ] = None,
    kernel_package: Annotated[
        str,
        typer.Option(
            help="Debian kernel package: linux-image-cloud-amd64 (VMs: virtio) or linux-image-amd64 (real "
            "hardware: e1000e, igb, ahci, ...)."
        ),
    ] = "linux-image-cloud-amd64",
    as_json: JsonOption = False,
) -> None:
    """Build the installer's kernel (Debian's cloud kernel or --kernel-package, through apt) and initramfs
    (busybox, drivers, tools and haoscar's install script) into STATE/netboot/boot/installer/, served for every
    image."""
    from haoscar.provision.installer_build import build_installer

    state = cli_context(ctx).state_dir
    if as_json:
        result = build_installer(state, cache_dir=cache_dir, kernel_package=kernel_package)
        print_json(result.as_dict())
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), console=console) as bars:
        task = bars.add_task("build-installer", total=100)
        result = build_installer(
            state,
            cache_dir=cache_dir,
            progress=lambda pct, what: bars.update(task, completed=pct, description=what),
            kernel_package=kernel_package,
        )
    console.print(
        f"installer: {result.package} {result.version} ({result.kernel_bytes / 1e6:.1f} MB kernel, "
        f"{result.initrd_bytes / 1e6:.1f} MB initramfs{', cached' if result.cached else ''}) in {result.seconds} s"
    )
    console.print(f"drivers: {', '.join(result.modules)}; built in: {', '.join(result.builtin) or '-'}")
    if result.missing:
        console.print(f"not in this kernel: {', '.join(result.missing)}")


@bench_app.command("install")
def bench_install(
    ctx: typer.Context,
    as_json: JsonOption = False,
) -> None:
    """Install one VM over the network in a fresh lab: time per stage, image MB/s from the boot server, and the
    same image copied with plain rsync in the same run."""
    from haoscar.scenarios.bench.install import run_bench

    result = run_bench(cli_context(ctx).state_dir)
    if as_json:
        print_json(result)
        return
    console.print(
        f"install {result['install_s']} s; image {result['image_mb_per_s']} MB/s from the boot server, "
        f"{result['rsync_mb_per_s']} MB/s with plain rsync"
    )
    console.print(table("stages", ["stage", "seconds"], list(result["stages_s"].items())))


def register(app: typer.Typer) -> None:
    app.add_typer(install_app, name="install")
