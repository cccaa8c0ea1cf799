"""Size limits of haoscar's source: no module over 500 lines, no function or method over 60 lines.

    python tools/check_sizes.py [PATH ...]        (default: src)

A module's size is its number of lines. A function's size runs from its ``def`` line to its last line
(``end_lineno``): decorators are NOT counted, the docstring and comments inside the body are. Nested functions and
methods are checked on their own too (and also count towards the function that holds them). Offenders are printed
as ``path:line: name: N lines``; the exit status is 1 when there is any, 0 otherwise.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function in ``tree`` with its qualified name (``Class.method``, ``outer.inner``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def offenders(path: Path) -> list[str]:
    """The size problems of one Python file, one line each."""
    text = path.read_text()
    problems = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        problems.append(f"{path}:1: module: {lines} lines (limit {MAX_MODULE_LINES})")
    for name, node in _functions(ast.parse(text, filename=str(path))):
        size = (node.end_lineno or node.lineno) - node.lineno + 1
        if size > MAX_FUNCTION_LINES:
            problems.append(f"{path}:{node.lineno}: {name}: {size} lines (limit {MAX_FUNCTION_LINES})")
    return problems


def python_files(roots: list[Path]) -> list[Path]:
    files: list[Path] = []
    for root in roots:
        files.extend(sorted(root.rglob("*.py")) if root.is_dir() else [root])
    return files


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path("src")]
    problems = [problem for path in python_files(roots) for problem in offenders(path)]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
