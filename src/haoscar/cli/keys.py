"""``haoscar keys rotate``: replace the HA keys and haoscar's ssh key of a running cluster without downtime."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from haoscar.cli.context import cli_context
from haoscar.cli.render import console, print_json, table

keys_app = typer.Typer(help="The cluster's keys: rotate them while HA runs.", no_args_is_help=True)


@keys_app.command("rotate")
def rotate(
    ctx: typer.Context,
    *,
    spec_file: Annotated[Path, typer.Option("--spec", help="The cluster spec.")] = Path("/etc/haoscar/cluster.yaml"),
    purpose: Annotated[str, typer.Option("--purpose", help="heartbeat, lease, replication, ssh or all.")] = "all",
    grace: Annotated[
        float, typer.Option("--grace", help="Seconds the old key stays accepted after the switch.")
    ] = 60.0,
    ssh_user: Annotated[str, typer.Option("--ssh-user", help="Who haoscar logs in as on the other hosts.")] = "root",
    ssh_port: Annotated[int, typer.Option("--ssh-port", help="The other hosts' ssh port.")] = 22,
    authorized_keys: Annotated[
        str, typer.Option("--authorized-keys", help="Where haoscar's ssh key is authorized on each host.")
    ] = "/root/.ssh/authorized_keys",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Stage, switch, then retire new keys on both heads and the witness (run it on the primary); HA keeps
    running, and the witness only ever receives the lease key."""
    from haoscar.commands import keys
    from haoscar.commands.env import Env

    say = (lambda line: None) if as_json else (lambda line: console.print(line, markup=False))
    env = Env(cli_context(ctx).state_dir, progress=say)
    request = keys.RotateKeys(
        spec_file=spec_file,
        purpose=purpose,
        grace_s=grace,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        authorized_keys=authorized_keys,
    )
    report = keys.rotate(env, request)
    if as_json:
        print_json(report.as_dict())
        return
    rows = [(r.purpose, str(r.old), str(r.new), ", ".join(r.hosts)) for r in report.rotated]
    console.print(table("rotated keys", ("purpose", "old", "new", "hosts"), rows))
    console.print(f"done in {report.seconds:g} s", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
