"""``haoscar image ...``: the client image store (SystemImager's si_getimage / si_lsimage / si_rmimage)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, flags, print_json, table
from haoscar.commands import images
from haoscar.commands.env import Env, no_meter

image_app = typer.Typer(
    help="Client images: fetch from a golden client, build with debootstrap, version, roll back.",
    no_args_is_help=True,
)

IP_HELP = f"IP assignment method of nodes installed from this image: {' | '.join(images.IP_ASSIGNMENTS)}."
POST_HELP = f"What an installed node does when its install is done: {' | '.join(images.POST_INSTALLS)}."


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


@contextmanager
def _progress(env: Env, title: str, enabled: bool) -> Iterator[Env]:
    """``env`` with a Rich progress bar as its meter while the command runs; no bar when the output is JSON."""
    if not enabled:
        yield env
        return
    with Progress(
        TextColumn("[bold]{task.fields[title]}[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=100, title=title)

        def update(percent: float, description: str) -> None:
            bar.update(task, completed=percent, description=description)

        env.meter = update
        try:
            yield env
        finally:
            env.meter = no_meter


@image_app.command("list")
def list_images(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """List the images with their current version and settings."""
    listed = images.image_list(cli_env(ctx), images.ListImages())
    if as_json:
        print_json(listed.as_dicts())
        return
    if not listed.images:
        console.print("no images yet: haoscar image fetch NAME --golden-client HOST, or haoscar image build NAME")
        return
    rows = [
        (s.name, s.current, len(s.versions), s.ip_assignment, s.post_install, _size(s.bytes), s.source)
        for s in listed.images
    ]
    columns = ["name", "current", "versions", "ip assignment", "post install", "size", "source"]
    # Names are what people copy into the next command: the long source column folds, settings go first.
    drop = ["post install", "ip assignment", "versions", "size", "source"]
    console.print(table("Images", columns, rows, keys=["name"], drop=drop))


@image_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The image.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show an image's settings and every version."""
    details = images.image_show(cli_env(ctx), images.ShowImage(name))
    if as_json:
        print_json(
            {
                **asdict(details.summary),
                "root": details.root,
                "version_details": [asdict(v) for v in details.versions],
            }
        )
        return
    s = details.summary
    console.print(
        f"image [bold]{s.name}[/]: current version {s.current}, IP assignment {s.ip_assignment}, "
        f"post install {s.post_install}, exclude file {s.exclude_file or 'none'}\nroot: {details.root}",
        highlight=False,
    )
    rows = [
        (
            f"{v.version}*" if v.version == s.current else str(v.version),  # one word: awk keeps its fields
            v.created,
            v.method,
            v.source,
            v.files,
            _size(v.bytes),
            _size(v.new_bytes),
            v.parent,
        )
        for v in details.versions
    ]
    columns = ["version", "created", "method", "source", "entries", "size", "own size", "parent"]  # *: current
    console.print(table("Versions", columns, rows, keys=["version", "source"]))


def _print_diff(report: images.ImageDiff, as_json: bool) -> None:
    if as_json:
        print_json(report.as_dict())
        return
    diff = report.diff
    # No newer side: the diff is against another image's current tree.
    title = f"{report.name} {report.older} -> {report.newer}" if report.newer else f"{report.name} -> {report.older}"
    console.print(
        f"{title}: {len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed",
        highlight=False,
    )
    for mark, paths in (("+", diff.added), ("-", diff.removed), ("~", diff.changed)):
        for path in paths:
            console.print(f"{mark} {path}", highlight=False, markup=False)


@image_app.command("diff")
def diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The image.")],
    a: Annotated[
        str | None, typer.Argument(help="The older version (default: the parent of B), or another image's name.")
    ] = None,
    b: Annotated[int | None, typer.Argument(help="The newer version (default: the current one).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List paths added (+), removed (-) and changed (~) between two versions, or two images' current trees."""
    if a is not None and not a.isdigit():
        request = images.DiffImages(name, other_image=a)
    else:
        request = images.DiffImages(name, int(a) if a is not None else None, b)
    _print_diff(images.image_diff(cli_env(ctx), request), as_json)


@image_app.command("rollback")
def rollback(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The image.")],
    to: Annotated[int | None, typer.Option("--to", help="The version to make current (default: the previous).")] = None,
) -> None:
    """Make an older version the current one (the one nodes are installed from)."""
    done = images.image_rollback(cli_env(ctx), images.RollbackImage(name, to))
    console.print(f"image {name}: current version is now {done.current}", highlight=False)


@image_app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The image.")],
    version: Annotated[int | None, typer.Option("--version", help="Delete only this version.")] = None,
) -> None:
    """Delete an image, or one of its versions (never the current version of an image that nodes use)."""
    deleted = images.image_delete(cli_env(ctx), images.DeleteImage(name, version)).versions
    what = f"version {deleted[0]}" if version is not None else f"{len(deleted)} version(s)"
    console.print(f"image {name}: deleted {what}", highlight=False)


@image_app.command("fetch")
def fetch(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Argument(help="The image to make a new version of, e.g. serverimage.")],
    golden_client: Annotated[str, typer.Option("--golden-client", help="Host name or address of the machine.")],
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="User to log in as (needs to read all files).")] = "root",
    ssh_port: Annotated[int, typer.Option("--ssh-port", help="The golden client's ssh port.")] = 22,
    ip_assignment: Annotated[str | None, typer.Option("--ip-assignment", help=IP_HELP)] = None,
    post_install: Annotated[str | None, typer.Option("--post-install", help=POST_HELP)] = None,
    source_root: Annotated[str, typer.Option("--source-root", help="Directory on the golden client to copy.")] = "/",
    exclude_file: Annotated[
        Path | None, typer.Option("--exclude-file", help="rsync exclude patterns, one per line; kept for later.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new version's metadata as JSON.")] = False,
) -> None:
    """Pull a running machine's file system (a golden client) over rsync/ssh into a new image version."""
    request = images.FetchRequest(
        name=name,
        golden_client=golden_client,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        source_root=source_root,
        ip_assignment=ip_assignment,
        post_install=post_install,
        exclude_file=exclude_file,
    )
    with _progress(cli_env(ctx), f"fetch {name}", not as_json) as env:
        meta = images.image_fetch(env, request)
    if as_json:
        print_json(asdict(meta))
        return
    console.print(
        f"[green]✓[/] image {name} version {meta.version}: {meta.files} entries, {_size(meta.bytes)}, "
        f"{_size(meta.new_bytes)} new",
        highlight=False,
    )


@image_app.command("build")
def build(
    ctx: typer.Context,
    *,
    name: Annotated[str, typer.Argument(help="The image to make a new version of, e.g. oscarimage.")],
    suite: Annotated[str, typer.Option("--suite", help="Debian suite.")] = "bookworm",
    packages: Annotated[
        str, typer.Option("--packages", help="Extra packages, comma or space separated (a kernel and sshd are in).")
    ] = "",
    ip_assignment: Annotated[str | None, typer.Option("--ip-assignment", help=IP_HELP)] = None,
    post_install: Annotated[str | None, typer.Option("--post-install", help=POST_HELP)] = None,
    spec: Annotated[
        Path | None, typer.Option("--spec", help="A cluster.yaml: build its image NAME (suite, packages, settings).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the new version's metadata as JSON.")] = False,
) -> None:
    """Build a Debian image from scratch with debootstrap from this machine's apt mirror."""
    extra = [p for p in packages.replace(",", " ").split() if p]
    request = images.BuildImage(name, suite, extra, ip_assignment, post_install, spec)
    with flags(name="NAME"), _progress(cli_env(ctx), f"build {name}", not as_json) as env:
        meta = images.image_build(env, request)
    if as_json:
        print_json(asdict(meta))
        return
    console.print(
        f"[green]✓[/] image {name} version {meta.version}: {meta.files} entries, {_size(meta.bytes)}, "
        f"kernel {meta.details.get('kernel')}",
        highlight=False,
    )


@image_app.command("import")
def import_tree(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The image to make a new version of.")],
    directory: Annotated[Path, typer.Argument(help="A local root tree to copy.")],
    ip_assignment: Annotated[str | None, typer.Option("--ip-assignment", help=IP_HELP)] = None,
    post_install: Annotated[str | None, typer.Option("--post-install", help=POST_HELP)] = None,
) -> None:
    """Copy a local directory into a new image version (the spec's directory source)."""
    request = images.ImportImage(name, directory, ip_assignment, post_install)
    with _progress(cli_env(ctx), f"import {name}", True) as env:
        meta = images.image_import(env, request)
    console.print(f"[green]✓[/] image {name} version {meta.version}: {meta.files} entries", highlight=False)


@image_app.command("ssh-key")
def ssh_key(ctx: typer.Context) -> None:
    """Print haoscar's public ssh key: put it in a golden client's authorized_keys before image fetch."""
    typer.echo(images.image_ssh_key(cli_env(ctx), images.ShowSshKey()).public_key)


def register(app: typer.Typer) -> None:
    app.add_typer(image_app, name="image")
