"""``haoscar witness run``: the lease witness on a third host."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from haoscar.cli.context import cli_context

witness_app = typer.Typer(help="The witness that grants one head at a time the lease.", no_args_is_help=True)


@witness_app.command("run")
def run(
    ctx: typer.Context,
    spec_file: Annotated[Path, typer.Option("--spec", help="The cluster spec with the ha.witness section.")],
    key_file: Annotated[Path | None, typer.Option("--key-file", help="Overrides ha.key_file.")] = None,
    address: Annotated[
        list[str] | None, typer.Option("--address", help="Listen here instead of ha.witness.addresses.")
    ] = None,
) -> None:
    """Serve leases in the foreground until SIGTERM. The active head's stale marks on its standby are kept under
    the state directory (witness/stale.json), so that a restarted witness still refuses the lease to a stale
    standby."""
    from haoscar.commands import ha
    from haoscar.commands.env import Env

    request = ha.RunWitness(spec_file=spec_file, key_file=key_file, addresses=address)
    ha.run_witness(Env(cli_context(ctx).state_dir), request)


def register(app: typer.Typer) -> None:
    app.add_typer(witness_app, name="witness")
