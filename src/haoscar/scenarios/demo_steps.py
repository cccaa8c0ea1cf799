"""The steps of a long demo act, each shown as it runs (a Rich spinner with the elapsed time) and then as one line
(``✓``/``✗``, what, how long, what was seen), kept for the act's summary table and its JSON.

A step is a function returning what it observed (one line). It fails by raising ``StepFailed`` (or any error: the
act shows the message, never a traceback). An *essential* step that fails stops the act: what depends on it is then
listed as not run, so the summary says exactly how far the cluster got.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


class StepFailed(Exception):
    """A step saw something wrong; the message is what it saw."""


class ActStopped(Exception):
    """An essential step failed: the act stops here (its summary lists the steps not run)."""


@dataclass(frozen=True)
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


@dataclass
class Steps:
    """Runs and records the act's steps on ``console``."""

    console: Console
    results: list[StepResult] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)

    def run(self, name: str, step: Callable[[], str], *, essential: bool = True) -> bool:
        started = time.monotonic()
        spinner = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=self.console, transient=True
        )
        try:
            # a terminal sees the step run (spinner, elapsed time); a log gets only the line that ends it
            with spinner if self.console.is_terminal else contextlib.nullcontext():
                spinner.add_task(name, total=None)
                detail, ok = step(), True
        except Exception as exc:  # shown as the step's result, never as a traceback
            detail, ok = _message(exc), False
        took = time.monotonic() - started
        self.results.append(StepResult(name, ok, round(took, 1), detail))
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self.console.print(f"{mark} {name} [dim]({took:.1f} s)[/]: ", end="")
        self.console.print(_shown(detail), markup=False, highlight=False)
        if not ok and essential:
            raise ActStopped(name)
        return ok

    def skip(self, names: list[str]) -> None:
        self.not_run.extend(names)

    @property
    def ok(self) -> bool:
        return not self.not_run and all(r.ok for r in self.results)

    def table(self, title: str) -> Table:
        summary = Table(title=title, title_justify="left", header_style="bold")
        for column in ("", "step", "took", "observed"):
            summary.add_column(column, overflow="fold")
        for r in self.results:
            summary.add_row("[green]✓[/]" if r.ok else "[red]✗[/]", r.name, f"{r.seconds:.1f} s", _shown(r.detail))
        for name in self.not_run:
            summary.add_row("[yellow]-[/]", name, "-", "not run")
        return summary

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "steps": [asdict(r) for r in self.results], "not_run": list(self.not_run)}


def _shown(detail: str, limit: int = 400) -> str:
    """A detail as shown on screen (the JSON keeps it whole): a failure's log tail can be long."""
    return detail if len(detail) <= limit else detail[:limit] + " ..."


def _message(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if isinstance(exc, StepFailed) else f"{type(exc).__name__}: {text}"
