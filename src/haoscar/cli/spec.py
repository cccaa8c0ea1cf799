"""``haoscar spec ...``: validate a cluster spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from haoscar.cli.context import cli_env
from haoscar.cli.render import console, print_json, table
from haoscar.commands.specs import SpecChecked, ValidateSpec, spec_validate
from haoscar.errors import UserError
from haoscar.spec import SpecError, all_nodes, check_text

spec_app = typer.Typer(help="Check and apply cluster specs (cluster.yaml).", no_args_is_help=True)


@spec_app.command("validate")
def validate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The cluster spec to check, e.g. examples/lab.yaml.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Check a spec: list every problem as FILE:LINE: path: message (exit 2), or summarise it (exit 0)."""
    try:
        checked = spec_validate(cli_env(ctx), ValidateSpec(file))
    except SpecError as exc:
        if not as_json:
            raise
        print_json({"valid": False, "file": str(file), "problems": [p.as_dict(str(file)) for p in exc.problems]})
        raise typer.Exit(2) from None
    except UserError as exc:
        if not as_json:
            raise
        # An unreadable file is a problem too, so a script reads the same shape whatever went wrong.
        problem = {"file": str(file), "line": 0, "path": "(file)", "message": exc.message}
        print_json({"valid": False, "file": str(file), "problems": [problem]})
        raise typer.Exit(2) from None
    if as_json:
        print_json(checked.as_dict())
        return
    _print_summary(checked)


def _print_summary(checked: SpecChecked) -> None:
    file, spec = checked.file, checked.spec
    nodes = all_nodes(spec)
    console.print(f"[green]✓[/] {file} is valid: cluster [bold]{spec.cluster.name}[/] ({spec.cluster.domain})")
    nets = spec.networks
    rows = [
        ("private", nets.private.subnet, nets.private.gateway),
        ("public", nets.public.subnet, nets.public.gateway),
    ]
    if nets.heartbeat is not None:
        rows.append(("heartbeat", nets.heartbeat.subnet, nets.heartbeat.gateway))
    console.print(table("Networks", ["network", "subnet", "gateway"], rows, keys=["network", "subnet", "gateway"]))
    heads = [
        (
            role,
            h.hostname,
            f"{h.private_interface} {h.private_ip}",
            f"{h.public_interface} {h.public_ip}",
            h.alias_ip,
        )
        for role, h in (("primary", spec.heads.primary), ("standby", spec.heads.standby))
    ]
    console.print(
        table(
            "Head nodes",
            ["role", "hostname", "private", "public", "alias IP"],
            heads,
            keys=["hostname", "private", "public", "alias IP"],
        )
    )
    groups = [(g["name"], g["image"], g["count"], g["first"], g["last"]) for g in checked.summary["client_groups"]]
    if groups:
        console.print(
            table(
                "Compute clients",
                ["group", "image", "count", "first", "last"],
                groups,
                keys=["group", "first", "last"],
            )
        )
    ha = spec.ha
    witness = ha.witness.hostname if ha.witness else "none (takeover needs fencing)"
    console.print(
        f"{len(nodes)} nodes, {len(spec.images)} images; HA: heartbeat {ha.heartbeat_interval:g} s, "
        f"dead after {ha.dead_time:g} s, failback {ha.failback}, witness {witness}, fencing {ha.fencing.method}"
    )
    for warning in checked.warnings:
        console.print(f"[yellow]warning:[/] {warning}", markup=True, highlight=False)


def validate_text(text: str, filename: str) -> list[str]:
    """Rendered problems of a spec text (used by tests and other commands)."""
    _, problems = check_text(text, filename)
    return [p.render(filename) for p in problems]


def register(app: typer.Typer) -> None:
    app.add_typer(spec_app, name="spec")
