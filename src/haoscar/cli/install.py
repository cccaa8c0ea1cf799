"""``haoscar install ...``: watch network installations; ``haoscar netboot build-installer``: make what they boot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.netboot import netboot_app
from haoscar.cli.render import console, print_json, table
from haoscar.cli.wire_text import wire_text
from haoscar.commands.env import Env

if TYPE_CHECKING:
    from haoscar.commands.install import InstallRow, InstallSnapshot

install_app = typer.Typer(
    help="Network installation: live progress of installing nodes, and its settings.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _env(ctx: typer.Context) -> Env:
    return Env(cli_context(ctx).state_dir)


def install_label(row: InstallRow) -> str:
    """The text beside a node's bar. Stage and detail were reported by the installer over the network: escaped."""
    state = row.install_state
    if state == "failed":
        return f"[red]failed: {wire_text(row.detail)}[/]"
    if state == "installing":
        return f"{wire_text(row.stage)} {row.mb_per_s or 0:.1f} MB/s {row.elapsed_s or 0:.0f} s"
    return f"[green]{state}[/] {row.elapsed_s or 0:.0f} s" if state == "installed" else wire_text(state)


class InstallBars:
    """``install monitor``'s live view: one bar per node, updated from each snapshot the command reports."""

    def __init__(self, out: Console = console) -> None:
        self.bars = Progress(
            TextColumn("{task.fields[node]:<12}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[label]}"),
            console=out,
        )
        self.tasks: dict[str, TaskID] = {}

    def update(self, snapshot: InstallSnapshot) -> None:
        for row in snapshot.rows:
            label = install_label(row)
            if row.node not in self.tasks:
                node = wire_text(row.node)
                self.tasks[row.node] = self.bars.add_task("", total=100, node=node, label=label)
            self.bars.update(self.tasks[row.node], completed=row.percent or 0, label=label)


@install_app.command("monitor")
def monitor(
    ctx: typer.Context,
    nodeset: Annotated[str | None, typer.Argument(help="Only these nodes, e.g. node[01-04] (default: all).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Print the current state once and exit.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.", min=0.2)] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Live progress of every installing node: stage, percent, rate and elapsed time (until none is installing)."""
    from haoscar.commands import install

    request = install.MonitorInstalls(nodeset=nodeset, follow=not (once or as_json), interval=interval)
    with _env(ctx) as env:
        if as_json or once:
            result = install.monitor(env, request)
            if as_json:
                print_json(result.as_dict())
                return
            columns = ["node", "state", "stage", "percent", "MB/s", "elapsed s", "detail"]
            cells = [
                (wire_text(r.node), wire_text(r.install_state), wire_text(r.stage), r.percent, r.mb_per_s,
                 r.elapsed_s, wire_text(r.detail))
                for r in result.rows
            ]  # fmt: skip
            console.print(table("installations", columns, cells))
            return
        view = InstallBars()
        with view.bars:
            result = install.monitor(env, request, on_snapshot=view.update)
    if not result.rows:
        console.print("no node is installing or has installed yet (start one: haoscar netboot enable NODES)")


@install_app.command("configure")
def configure(
    ctx: typer.Context,
    stall_timeout: Annotated[
        float | None, typer.Option(help="Seconds without a report before an installing node counts as failed.")
    ] = None,
    token_ttl: Annotated[
        float | None,
        typer.Option(help="Seconds a node's install credential stays valid after it boots the installer."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Settings of network installation (name at least one)."""
    from haoscar.commands import install

    with _env(ctx) as env:
        settings = install.configure(env, install.InstallSettings(stall_timeout=stall_timeout, token_ttl=token_ttl))
    if as_json:
        print_json({"stall_timeout": settings.stall_timeout, "token_ttl": settings.token_ttl})
    else:
        console.print(
            f"installing nodes silent for {settings.stall_timeout:g} s are marked failed; "
            f"install credentials expire {settings.token_ttl:g} s after boot"
        )


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
    from haoscar.commands.ha import both_heads

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
        render_status(both_heads(result.local_status).as_dict())
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
    from haoscar.commands import netboot

    request = netboot.BuildInstaller(cache_dir=cache_dir, kernel_package=kernel_package)
    if as_json:
        with _env(ctx) as env:
            result = netboot.build_installer(env, request)
        print_json(result.as_dict())
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), console=console) as bars:
        task = bars.add_task("build-installer", total=100)

        def meter(percent: float, what: str) -> None:
            bars.update(task, completed=percent, description=escape(what))

        with Env(cli_context(ctx).state_dir, meter=meter) as env:
            result = netboot.build_installer(env, request)
    console.print(
        f"installer: {result.package} {result.version} ({result.kernel_bytes / 1e6:.1f} MB kernel, "
        f"{result.initrd_bytes / 1e6:.1f} MB initramfs{', cached' if result.cached else ''}) in {result.seconds} s",
        markup=False,
    )
    console.print(f"drivers: {', '.join(result.modules)}; built in: {', '.join(result.builtin) or '-'}", markup=False)
    if result.missing:
        console.print(f"not in this kernel: {', '.join(result.missing)}", markup=False)


@bench_app.command("install")
def bench_install(
    ctx: typer.Context,
    as_json: JsonOption = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Install one VM over the network in a fresh lab: time per stage, and the image's MB/s into a lab host through
    the installer's fetch path and with rsync, both timed on the client, in the same run."""
    from haoscar.scenarios.bench.install import run_bench

    result = run_bench(cli_context(ctx).state_dir)
    keep("install", result, save, out, note)
    if as_json:
        print_json(result)
        return
    console.print(
        f"install {result['install_s']} s; image into a lab host: {result['image_mb_per_s']} MB/s through the "
        f"installer's fetch path, {result['rsync_mb_per_s']} MB/s with rsync (both timed on the client)"
    )
    console.print(table("stages", ["stage", "seconds"], list(result["stages_s"].items())))


def register(app: typer.Typer) -> None:
    app.add_typer(install_app, name="install")
