"""tools/check_sizes.py: modules over 500 lines and functions over 60 lines (from the def line) are reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[3] / "tools" / "check_sizes.py"


def _run(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), *map(str, paths)], capture_output=True, text=True, check=False)


def _function(name: str, body_lines: int, decorators: int = 0) -> str:
    return "".join(["@staticmethod\n" * decorators, f"def {name}():\n", "    x = 1\n" * body_lines])


def test_long_functions_and_modules_are_named_with_their_line(tmp_path: Path) -> None:
    module = tmp_path / "big.py"
    text = (
        _function("fits", 59)
        + "\n\nclass Thing:\n"
        + "".join("    " + line + "\n" for line in _function("too_long", 60).splitlines())
    )
    module.write_text(text + "\n" * (501 - len(text.splitlines())))
    out = _run(module)
    assert out.returncode == 1
    assert out.stdout.splitlines() == [
        f"{module}:1: module: 501 lines (limit 500)",
        f"{module}:64: Thing.too_long: 61 lines (limit 60)",
    ]


def test_decorators_do_not_count_and_a_clean_tree_passes(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "ok.py").write_text(_function("decorated", 59, decorators=5))
    out = _run(tmp_path / "pkg")
    assert (out.returncode, out.stdout) == (0, "")
