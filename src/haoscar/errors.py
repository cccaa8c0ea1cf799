"""Errors a user can cause. The CLI prints them as one clear message and exits with status 2."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class UserError(Exception):
    """Something the user can fix: bad input, an unknown name, a missing prerequisite.

    The message names what is wrong and what would be right; no traceback is shown.
    """

    exit_code = 2

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def __str__(self) -> str:
        return "\n".join([self.message, *self.details])


class NotFound(UserError):
    """An unknown node, image, lab, host, ..."""


class NeedsRoot(UserError):
    """The operation needs root (network namespaces, netlink, raw sockets)."""


# ------------------------------------------------------------------------------------------ errors naming fields

# A field named inside a message: each front end writes it in its own words (see `ref`).
_REF = re.compile(r"\{field:([A-Za-z_][A-Za-z0-9_]*)\}")


def ref(field: str) -> str:
    """A request field named inside a message, e.g. advice: ``f"pick another {ref('base_name')}"``; the CLI
    prints it as ``--base-name``, a web form as the field's label."""
    return "{field:" + field + "}"


def flag_name(field: str) -> str:
    """The usual words for a field in text: ``start_ip`` is ``--start-ip``, the CLI option of the same name."""
    return "--" + field.replace("_", "-")


@dataclass(frozen=True)
class FieldProblem:
    """One bad request field: ``field`` is the request dataclass's attribute (``start_ip``), ``detail`` what is
    wrong with it, without its name (``'10.0.0.300' is not an IPv4 address``), other fields in it as `ref`.

    ``sep`` joins the field's name and the detail in a line (``--count 0: ...``, ``--start-ip: ...``); None: the
    detail is the whole line (it names its field itself, as a `ref`, where the sentence needs it). ``bare``: in
    ``str()`` the fields are written as their own names (``catch_up: ...``) rather than as `flag_name`, for
    messages that read so before they named fields through FieldError (tests and scripts match them)."""

    field: str
    detail: str
    sep: str | None = " "
    bare: bool = False

    def text(self, name: Callable[[str], str]) -> str:
        """The detail, every field in it named by ``name``."""
        return _REF.sub(lambda match: name(match.group(1)), self.detail)

    def line(self, name: Callable[[str], str]) -> str:
        """The problem as one line, its fields named by ``name``."""
        text = self.text(name)
        return text if self.sep is None else f"{name(self.field)}{self.sep}{text}"


class FieldError(UserError):
    """Bad input in named fields of a command's request (one problem, or several at once).

    A front end shows each problem next to its field (``problems``) or renders the whole error in its own words
    (`render`); ``str()`` names each field as `flag_name` does (or, ``bare``, by its own name). ``names`` holds the
    words a front end gives some fields when they differ from that (the CLI's positional ``NODESET``), filled as
    the error passes through it.
    """

    def __init__(self, field: str, detail: str, *, sep: str | None = " ", bare: bool = False) -> None:
        self.problems = [FieldProblem(field, detail, sep, bare)]
        self.summary = ""
        self.names: dict[str, str] = {}
        super().__init__(*self.render())

    @classmethod
    def several(cls, problems: Sequence[FieldProblem], summary: str) -> FieldError:
        """All the problems of one request, under ``summary`` (even when there is only one)."""
        first = problems[0]
        error = cls(first.field, first.detail, sep=first.sep, bare=first.bare)
        error.problems, error.summary = list(problems), summary
        error.message, error.details = error.render()
        error.args = (error.message,)
        return error

    @property
    def field(self) -> str:
        """The (first) field to fix."""
        return self.problems[0].field

    @property
    def detail(self) -> str:
        """What is wrong with it, other fields named by their field names."""
        return self.problems[0].text(str)

    def render(self, name: Callable[[str], str] | None = None) -> tuple[str, list[str]]:
        """The message and its detail lines, every field named by ``name`` (None: as ``str()`` names them)."""
        lines = [p.line(name or (str if p.bare else flag_name)) for p in self.problems]
        if len(lines) == 1 and not self.summary:
            return lines[0], []
        return self.summary or f"{len(lines)} problems", lines


class FieldNotFound(FieldError, NotFound):
    """A field names something that does not exist (an unknown image)."""
