"""Fixtures shared by unit tests of several directories (a fixture is found from any test below this one).

The CLI as a user runs it, in this process: ``haoscar("--state-dir", state, "node", "list")`` gives (exit status,
stdout, stderr); ``state`` is a fresh state directory holding the lab spec (data/lab.yaml) applied, copied from one
``template`` per test module; ``dump(state)`` is its whole database as SQL, to show that a refused command changed
nothing. A module that defines a fixture of the same name uses its own.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.commands.apply import apply_spec
from haoscar.db.session import open_database
from haoscar.spec import check_text

Cli = Callable[..., tuple[int, str, str]]
Dump = Callable[[str], list[str]]


@pytest.fixture
def haoscar(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run_cli(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            run(list(argv))
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return (code if isinstance(code, int) else 1), out, err

    return run_cli


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory with the lab spec applied (once per module: applying it takes a while)."""
    directory = tmp_path_factory.mktemp("template")
    spec, problems = check_text((resources.files("haoscar") / "data" / "lab.yaml").read_text(), "lab.yaml")
    assert spec is not None, problems
    db = open_database(directory)
    apply_spec(db, spec)
    db.close()
    return directory


@pytest.fixture
def state(template: Path, tmp_path: Path) -> str:
    shutil.copytree(template, tmp_path / "state")
    return str(tmp_path / "state")


def _dump(state: str) -> list[str]:
    with sqlite3.connect(Path(state) / "haoscar.db") as connection:
        return list(connection.iterdump())


@pytest.fixture
def dump() -> Dump:
    return _dump
