"""`haoscar bench table`: the measured table from kept results, written between the README's markers."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from haoscar.cli.main import run
from haoscar.scenarios.bench.results import save_result
from haoscar.scenarios.bench.table import END, START

MACHINE = {"cpus": 2, "kernel": "Linux 6.1"}


def keep_one(where: Path) -> None:
    when = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.UTC)
    result = {"seconds": 0.53, "nodes": 10000, "target_seconds": 5.0}
    save_result("define-clients", result, where, machine=MACHINE, when=when)


def test_the_table_goes_between_the_markers_and_nothing_else_changes(tmp_path: Path) -> None:
    keep_one(tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{START}\nstale\n{END}\nafter\n")
    with pytest.raises(SystemExit) as done:
        run(["bench", "table", "--dir", str(tmp_path / "results"), "--update", str(readme)])
    assert done.value.code == 0
    text = readme.read_text()
    assert text.startswith(f"# title\n{START}\n| what | value | bound / condition | source |")
    assert "| define N clients | 0.53 s | floor 5 s; 10,000 clients |" in text
    assert "stale" not in text
    assert text.endswith(f"{END}\nafter\n")


def test_a_file_without_markers_is_refused_and_left_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keep_one(tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text("# title\n")
    with pytest.raises(SystemExit) as done:
        run(["bench", "table", "--dir", str(tmp_path / "results"), "--update", str(readme)])
    assert done.value.code == 2
    assert "has no bench-table markers" in capsys.readouterr().err
    assert readme.read_text() == "# title\n"
