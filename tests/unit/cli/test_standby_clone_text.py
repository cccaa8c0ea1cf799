"""``standby clone`` shows text from the network as text: a standby whose DHCP host name or installer messages
carry Rich markup (``[/x]``) or terminal escapes neither crashes the live view nor drives the terminal."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from haoscar.cli import standby as standby_cli
from haoscar.commands import clone
from haoscar.commands.standby_clone import CloneOptions, CloneReport, StepResult

HOSTILE = "standby[/x][bold]\x1b[2J\x1b]0;pwned\x07"
SHOWN = "standby[/x][bold]?[2J?]0;pwned?"


def _console() -> Console:
    return Console(record=True, width=250, force_terminal=True, color_system=None, file=io.StringIO())


def _steps() -> list[StepResult]:
    return [
        StepResult("mac", "Collect the standby's MAC", "done", f"52:54:00:aa:00:02 from host name {HOSTILE}", 1.0),
        StepResult("install", "Wait for the standby's install", "failed", f"disk: {HOSTILE}", 2.0),
    ]


def test_clone_progress_shows_hostile_host_names_and_messages_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    console = _console()
    monkeypatch.setattr(standby_cli, "console", console)

    def fake_clone(env: Any, options: CloneOptions, observe: Any) -> CloneReport:
        observe("step-start", ("mac", f"MAC of {HOSTILE}"))
        observe("step", _steps()[0])
        observe("step-start", ("install", "Wait for the standby's install"))
        observe("install", (f"[/image]{HOSTILE}", 40, HOSTILE))
        observe("complete", HOSTILE)
        observe("step", _steps()[1])
        return CloneReport(steps=_steps())

    monkeypatch.setattr(clone, "standby_clone", fake_clone)
    report = standby_cli._clone_with_progress(None, CloneOptions(spec_file=Path("cluster.yaml")))  # type: ignore[arg-type]
    standby_cli._render_clone(report)
    out = console.export_text()
    assert f"✓ Collect the standby's MAC: 52:54:00:aa:00:02 from host name {SHOWN}" in out
    assert f"✗ Wait for the standby's install: disk: {SHOWN}" in out
    assert "\x1b" not in out and "\x07" not in out
    assert f"│ disk: {SHOWN}" in out  # the table's result cell: the detail as sent, markup shown, not obeyed


def test_render_clone_keeps_markup_from_a_step_detail_out_of_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    console = _console()
    monkeypatch.setattr(standby_cli, "console", console)
    standby_cli._render_clone(CloneReport(steps=[StepResult("mac", "MAC", "done", "[/x]\x1b[31mred", 0.5)]))
    out = console.export_text()
    assert "[/x]?[31mred" in out
    assert "\x1b" not in out
