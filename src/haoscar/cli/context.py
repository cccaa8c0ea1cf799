"""What every command receives from the global options: one ``Env`` for the whole invocation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from haoscar.commands.env import Env
from haoscar.paths import state_dir


@dataclass(frozen=True)
class CliContext:
    state_dir: Path
    env: Env = field(init=False)

    def __post_init__(self) -> None:
        # Built once, so every command of this invocation sees the same state directory and database connection.
        object.__setattr__(self, "env", Env(state_dir=self.state_dir))


def cli_context(ctx: typer.Context) -> CliContext:
    root = ctx.find_root()
    obj = root.obj
    if isinstance(obj, CliContext):
        return obj
    # A command invoked without the root callback (a test calling a sub-app): the default state directory.
    made = CliContext(state_dir=state_dir())
    root.obj = made
    root.call_on_close(made.env.close)
    return made


def cli_env(ctx: typer.Context) -> Env:
    """The invocation's environment (closed when the command ends)."""
    return cli_context(ctx).env
