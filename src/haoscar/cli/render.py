"""Printing: tables for people, plain columns for pipes, JSON for scripts.

Every table goes through :func:`table`, which returns a renderable that picks its layout when it is printed:

- stdout is a terminal: a Rich table at the terminal's width. Key columns (names, addresses, MACs) are never cut
  or wrapped; other columns fold. When the key columns do not fit, the least important columns are dropped and a
  note names them; when even the key columns alone do not fit, every row is printed as a block of ``field value``
  lines (nothing dropped).
- stdout is not a terminal: plain columns aligned with spaces, no box drawing and no line wrapping, like
  ``kubectl get`` or ``wwctl``, so ``grep`` and ``awk`` work. Empty cells print as ``-`` so that every row has the
  same fields.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from haoscar.errors import FieldError, UserError, flag_name


class _Console(Console):
    """A console that neither crops nor wraps lines for a pipe (Rich would, at 80 columns, when stdout is no
    terminal)."""

    def print(self, *objects: Any, **options: Any) -> None:
        if not self.is_terminal:
            options.setdefault("crop", False)
            if all(isinstance(obj, str) for obj in objects):
                # A message stays on one line for grep, however long (a folded node set, a path).
                options.setdefault("soft_wrap", True)
        super().print(*objects, **options)


console: Console = _Console()
err_console: Console = _Console(stderr=True)

# Header words that mark a key column: what a person copies into the next command, so it is never cut.
KEY_WORDS = frozenset(
    {"name", "host", "hostname", "node", "nodes", "ip", "mac", "address", "alias", "subnet", "bridge"}
)
_BORDER = 1  # one border character per column edge in Rich's default box
_PADDING = 2  # one space each side of a cell


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else, so that ``| jq`` always works."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _plain(cell: str) -> str:
    """A cell without Rich markup, on one line."""
    return " ".join(Text.from_markup(cell).plain.split("\n")).strip()


def _is_key(header: str) -> bool:
    words = header.lower().replace("-", " ").replace("_", " ").split()
    return any(word in KEY_WORDS for word in words)


@dataclass
class Listing:
    """A table that chooses its layout for the console it is printed on (see the module docstring).

    ``keys`` are the column headers never cut (default: headers with a word of KEY_WORDS, else the first column);
    ``drop`` lists the headers to give up first when the terminal is narrow (default: the other columns from the
    right).
    """

    title: str | None
    columns: list[str]
    rows: list[list[str]]
    keys: set[str] = field(default_factory=set)
    drop: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = {c for c in self.columns if _is_key(c)} or set(self.columns[:1])
        if not self.drop:
            self.drop = [c for c in reversed(self.columns) if c not in self.keys]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not console.is_terminal:
            yield from self._plain_lines()
            return
        shown = list(self.columns)
        dropped: list[str] = []
        for victim in [c for c in self.drop if c not in self.keys]:
            if self._needed(shown) <= options.max_width:
                break
            shown.remove(victim)
            dropped.append(victim)
        if self._needed(shown) > options.max_width:
            yield from self._records()
            return
        yield self._rich_table(shown)
        if dropped:
            yield Text(f"(too narrow: left out {', '.join(dropped)}; widen the terminal or use --json)", style="dim")

    def _widths(self, column: str) -> int:
        """The narrowest a column may be: its longest cell for a key column, its longest word otherwise."""
        index = self.columns.index(column)
        lines = [line for row in self.rows for line in Text.from_markup(row[index]).plain.splitlines()]
        if column in self.keys:
            return max([cell_len(column), *(cell_len(line) for line in lines)])
        words = [word for text in (column, *lines) for word in text.split()] or [""]
        return max(cell_len(word) for word in words)

    def _needed(self, shown: list[str]) -> int:
        return sum(self._widths(c) + _PADDING + _BORDER for c in shown) + _BORDER

    def _rich_table(self, shown: list[str]) -> Table:
        out = Table(title=self.title, title_justify="left", header_style="bold")
        for column in shown:
            key = column in self.keys
            out.add_column(column, no_wrap=key, overflow="fold", min_width=self._widths(column) if key else None)
        indexes = [self.columns.index(c) for c in shown]
        for row in self.rows:
            out.add_row(*(row[i] for i in indexes))
        return out

    def _records(self) -> Iterator[Text]:
        """One block per row, ``header  value`` per line: for terminals too narrow for even the key columns."""
        if self.title:
            yield Text(self.title, style="bold")
        width = max(cell_len(c) for c in self.columns)
        for number, row in enumerate(self.rows):
            if number:
                yield Text("")
            for column, cell in zip(self.columns, row, strict=True):
                line = Text(f"{column:<{width}}  ", style="bold", overflow="fold")
                line.append_text(Text.from_markup(cell or "-"))
                yield line

    def _plain_lines(self) -> Iterator[Segment]:
        # Headers keep their case (some carry a host name) and become one word each, so awk counts them right.
        header = ["-".join(_plain(c).split()) or "-" for c in self.columns]
        body = [[_plain(cell) or "-" for cell in row] for row in self.rows]
        widths = [max(cell_len(r[i]) for r in [header, *body]) for i in range(len(header))]
        if self.title:
            yield Segment(self.title + "\n")
        for line in [header, *body]:
            cells = [cell + " " * (widths[i] - cell_len(cell)) for i, cell in enumerate(line)]
            yield Segment("  ".join(cells).rstrip() + "\n")


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    keys: Iterable[str] = (),
    drop: Iterable[str] = (),
) -> Listing:
    """A table for ``console.print``; see :class:`Listing` for ``keys`` and ``drop``."""
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    return Listing(title, list(columns), cells, set(keys), list(drop))


def error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def user_error(exc: UserError) -> None:
    """A UserError as the CLI prints it: one message (its detail lines below it). A FieldError is put in the
    CLI's words: each field as its flag, ``--`` + the field with ``-`` for ``_``, unless the command says
    otherwise (`flags`)."""
    if isinstance(exc, FieldError):
        message, details = exc.render(lambda field: exc.names.get(field) or flag_name(field))
    else:
        message, details = exc.message, exc.details
    error(message)
    for line in details:
        print(line, file=sys.stderr)


@contextmanager
def flags(**names: str) -> Iterator[None]:
    """Around a command call: the words of this command's CLI for request fields that are not ``--field-name``
    (a positional argument, an option spelled otherwise), used when a FieldError from the block is printed."""
    try:
        yield
    except FieldError as exc:
        exc.names = names | exc.names  # an inner block knows better
        raise


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
