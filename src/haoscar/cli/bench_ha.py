"""``haoscar bench failover`` and ``haoscar bench soak``: the HA daemon measured in the lab (see docs/benchmarks.md)."""

from __future__ import annotations

import contextlib
import importlib.resources
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from haoscar.cli.bench_save import NoteOption, OutOption, SaveOption, keep
from haoscar.cli.context import cli_context
from haoscar.cli.groups import bench_app
from haoscar.cli.render import console, err_console, print_json, table
from haoscar.errors import UserError
from haoscar.spec import ClusterSpec
from haoscar.spec.loader import load_spec

SpecOption = Annotated[
    Path | None,
    typer.Option("--spec", help="The cluster spec of the lab (default: the embedded demo lab, data/lab.yaml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _spec(path: Path | None) -> ClusterSpec:
    if path is not None:
        return load_spec(path)
    with importlib.resources.as_file(importlib.resources.files("haoscar.data") / "lab.yaml") as embedded:
        return load_spec(embedded)


@contextlib.contextmanager
def _progress(title: str) -> Iterator[Any]:
    """A Rich progress line on stderr, so that stdout stays pure JSON; yields the bench's ``note`` callback."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err_console, transient=True
    ) as progress:
        task = progress.add_task(title, total=None)

        def note(message: str) -> None:
            progress.update(task, description=f"{title}: {message}")

        yield note


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


@bench_app.command("failover")
def failover(
    ctx: typer.Context,
    *,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Crashes per contender and profile.")] = 5,
    vs: Annotated[
        str | None,
        typer.Option("--vs", help="Also measure a peer on the same lab: keepalived, tuned (advert_int 1, 0.1, 0.05)."),
    ] = None,
    spec_file: SpecOption = None,
    as_json: JsonOption = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Primary crash -> VIP answering from the standby (ping every 1 ms) and DHCP from the new head."""
    from haoscar.scenarios.bench.failover import BenchOptions, run_failover_bench

    if vs is not None and vs != "keepalived":
        raise UserError(f"--vs {vs!r} is not a known peer; the only one is --vs keepalived")
    spec = _spec(spec_file)
    options = BenchOptions(runs=runs, vs_keepalived=vs == "keepalived")
    with _progress("bench failover") as progress:
        result = run_failover_bench(spec, cli_context(ctx).state_dir, options, progress)
    keep("failover", result, save, out, note)
    if as_json:
        print_json(result)
        return
    rows = [
        (key.replace("_", " "), _fmt(result.get(f"{key}_median_ms")), ", ".join(map(_fmt, values)))
        for key, values in result["runs_ms"].items()
    ]
    rows.append(("DHCP (haoscar default)", _fmt(result["dhcp_default_median_ms"]), ""))
    console.print(table("Failover after a primary crash (ms)", ["contender", "median", "runs"], rows))
    floors = [(name, _fmt(f["value"]), _fmt(f["limit"]), "pass" if f["pass"] else "FAIL")
              for name, f in result["floors"].items()]  # fmt: skip
    console.print(table("Floors", ["floor", "value", "limit", "result"], floors))


@bench_app.command("soak")
def soak(
    ctx: typer.Context,
    *,
    minutes: Annotated[
        float, typer.Option("--minutes", min=0.05, help="How long each scenario runs (fractions allowed).")
    ] = 5.0,
    profile: Annotated[
        list[str] | None, typer.Option("--profile", help="default or fast (repeat it; default: both).")
    ] = None,
    stress: Annotated[
        list[str] | None, typer.Option("--stress", help="cpu-hog or loss-20 (repeat it; default: both).")
    ] = None,
    spec_file: SpecOption = None,
    as_json: JsonOption = False,
    save: SaveOption = False,
    out: OutOption = None,
    note: NoteOption = None,
) -> None:
    """Shipped configuration under a CPU hog and under 20 % frame loss on one network, for each profile: wrongful
    death declarations, refused takeovers, false failovers and the worst event-loop lag."""
    from haoscar.scenarios.bench.soak import PROFILES, STRESSES, run_soak

    for name in profile or []:
        if name not in PROFILES:
            raise UserError(f"--profile {name!r} is not a profile; use {' or '.join(PROFILES)}")
    spec = _spec(spec_file)
    with _progress("bench soak") as progress:
        result = run_soak(
            spec,
            cli_context(ctx).state_dir,
            minutes,
            progress,
            profiles=tuple(profile or PROFILES),
            stresses=tuple(stress or STRESSES),
        )
    keep("soak", result, save, out, note)
    if as_json:
        print_json(result)
        return
    keys = ("wrongful_death_declarations", "refused_takeovers", "false_failovers", "max_loop_lag_ms")
    rows = [(label, *(_fmt(s[k]) for k in keys)) for label, s in result["scenarios"].items()]
    headers = ["scenario", "death declarations", "refused takeovers", "false failovers", "worst lag ms"]
    console.print(table("Soak, primary alive throughout", headers, rows))


def register(app: typer.Typer) -> None:
    """The commands live on the shared ``bench`` group; importing this module registered them."""
