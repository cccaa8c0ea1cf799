"""``--save`` / ``--out DIR`` / ``--note`` on every bench: the raw result kept with the machine's facts
(``haoscar.scenarios.bench.results``; docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from haoscar.cli.render import err_console

SaveOption = Annotated[
    bool,
    typer.Option("--save", help="Keep the JSON with the machine's facts in docs/bench-results/ (or --out)."),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Directory for the kept result (implies --save; default docs/bench-results/)."),
]
NoteOption = Annotated[
    str | None,
    typer.Option("--note", help="Said beside the numbers in the generated table, e.g. 'short run, busy machine'."),
]


def keep(bench: str, result: dict[str, Any], save: bool, out: Path | None, note: str | None) -> Path | None:
    """Write the result file when asked; say where on stderr (stdout stays pure JSON)."""
    if not save and out is None:
        return None
    from haoscar.scenarios.bench.results import DEFAULT_DIR, save_result

    path = save_result(bench, result, out or DEFAULT_DIR, note=note)
    err_console.print(f"saved {path}")
    return path
