"""The CLI loads only the modules a command needs; this keeps that map true to what the modules register."""

from __future__ import annotations

import subprocess
import sys

import typer

from haoscar.cli import main


def _root_names(app: typer.Typer) -> set[str]:
    groups = {group.name for group in app.registered_groups if group.name}
    commands = {command.name for command in app.registered_commands if command.name}
    return groups | commands


def test_every_top_level_command_is_in_the_map() -> None:
    names = _root_names(main.load_commands())
    assert names - {"bench"} == set(main.COMMAND_MODULES)


def test_a_command_loads_only_its_own_modules() -> None:
    code = (
        "import sys; from haoscar.cli import main; main.load_commands(main.COMMAND_MODULES['lab']);"
        "print(sorted(m for m in sys.modules if m.startswith('haoscar.cli.') and m.count('.') == 2))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "haoscar.cli.lab" in out
    assert "haoscar.cli.image" not in out


def test_the_command_is_found_after_global_options() -> None:
    assert main._command_of(["--state-dir", "/tmp/x", "lab", "status"]) == "lab"
    assert main._command_of(["--state-dir=/tmp/x", "node", "list"]) == "node"
    assert main._command_of(["--help"]) is None


def test_help_lists_every_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "haoscar", "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    for name in main.COMMAND_MODULES:
        if name in _root_names(main.load_commands()):
            assert name in result.stdout
