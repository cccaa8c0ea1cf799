"""What every command receives from the global options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from haoscar.paths import state_dir


@dataclass(frozen=True)
class CliContext:
    state_dir: Path


def cli_context(ctx: typer.Context) -> CliContext:
    root = ctx.find_root()
    obj = root.obj
    if isinstance(obj, CliContext):
        return obj
    return CliContext(state_dir=state_dir())
