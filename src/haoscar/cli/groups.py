"""Command groups shared by several CLI modules (``haoscar bench ...`` holds benchmarks of every layer)."""

from __future__ import annotations

import typer

bench_app = typer.Typer(
    help="Benchmarks printing JSON, each run side by side with the peer it compares against.",
    no_args_is_help=True,
)
