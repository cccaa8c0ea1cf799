"""The wizard's forms as data: each names its request dataclass, the command it calls (the CLI's), its fields with
the seed's labels and defaults, and the CLI command line the same values make.

``parse`` turns form text into the request exactly as the CLI's options turn argv into it (an integer option given
``x`` is refused in typer's words); everything else is checked by the command itself, so its messages are the
CLI's. ``cli_line`` spells the equivalent command, every value shell-quoted.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from haoscar.commands.env import Env
from haoscar.errors import FieldError, FieldProblem, UserError, flag_name
from haoscar.provision.image_packages import split_names

__all__ = ["Form", "FormField", "cli_line", "parse", "run"]

Kind = Literal["text", "optional", "int", "optional-int", "float", "optional-float", "bool", "list", "path", "choice"]


@dataclass(frozen=True)
class FormField:
    """One input: ``name`` is the request field (and the input's id), ``seed`` the seed's label for it."""

    name: str
    label: str
    kind: Kind = "text"
    default: str = ""  # the form's prefilled text (the seed's default where it had one)
    seed: str = ""
    help: str = ""
    choices: tuple[str, ...] = ()
    cli_default: str | None = None  # the CLI's default, as text: the option is left out of the CLI line then
    positional: bool = False  # a CLI argument rather than an option
    flag: str | None = None  # the CLI option when it is not flag_name(name)


@dataclass(frozen=True)
class Form:
    """One form of a step; ``long``: it runs as a background job (an image build takes minutes)."""

    key: str
    step: str
    title: str
    button: str
    command: Callable[[Env, Any], Any]
    request: Callable[..., Any]
    fields: tuple[FormField, ...]
    cli: tuple[str, ...]
    long: bool = False
    cli_override: Callable[[Mapping[str, Any]], str] | None = field(default=None, repr=False)
    blame: str | None = None  # the one field an error of the command that names none is about (a spec file)

    def field_named(self, name: str) -> FormField | None:
        return next((f for f in self.fields if f.name == name), None)


def _number(f: FormField, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        word = "integer" if kind is int else "float"
        raise FieldError(f.name, f"{text!r} is not a valid {word}.", sep=": ") from None


def _value(f: FormField, text: str) -> Any:
    """One field's text as the CLI's option type would hold it."""
    text = text.strip()
    if f.kind in ("optional", "optional-int", "optional-float") and text == "":
        return None
    if f.kind in ("int", "optional-int"):
        return _number(f, text, int)
    if f.kind in ("float", "optional-float"):
        return _number(f, text, float)
    if f.kind == "bool":
        return text.lower() in ("on", "1", "true", "yes")
    if f.kind == "list":
        return split_names(text)
    if f.kind == "path":
        if not text:  # typer's words for a missing required option
            raise FieldError(f.name, f"Missing option '{f.flag or flag_name(f.name)}'.", sep=": ")
        return Path(text)
    return text


def values_of(form: Form, data: Mapping[str, str]) -> dict[str, Any]:
    """Every field's value from the submitted text (a missing field: its default); all parse problems at once."""
    values: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for f in form.fields:
        text = data.get(f.name, "" if f.kind == "bool" else f.default)
        try:
            values[f.name] = _value(f, text)
        except FieldError as exc:
            problems.extend(exc.problems)
    if len(problems) == 1:
        raise FieldError(problems[0].field, problems[0].detail, sep=problems[0].sep)
    if problems:
        raise FieldError.several(problems, f"{len(problems)} problems; nothing was changed")
    return values


def parse(form: Form, data: Mapping[str, str]) -> Any:
    """The form's request from the submitted text."""
    return form.request(**values_of(form, data))


def run(form: Form, env: Env, request: Any) -> Any:
    """The form's command; an error naming no field is put on ``blame`` (its words unchanged, ``str()`` too)."""
    try:
        return form.command(env, request)
    except FieldError:
        raise
    except UserError as exc:
        if form.blame is None:
            raise
        raise FieldError(form.blame, str(exc), sep=None) from exc


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def cli_line(form: Form, values: Mapping[str, Any]) -> str:
    """The CLI command that does what the form does with these values, each value shell-quoted."""
    if form.cli_override is not None:
        return form.cli_override(values)
    words = ["haoscar", *form.cli]
    options: list[str] = []
    for f in form.fields:
        value = values.get(f.name)
        if f.positional and value == "":  # still to be typed: the CLI's metavar
            words.append(f.name.upper())
            continue
        if value is None or value is False or value in ([], ""):
            continue
        flag = f.flag or flag_name(f.name)
        if value is True:
            options.append(flag)
            continue
        text = _text(value)
        if f.positional:
            words.append(shlex.quote(text))
        elif f.cli_default is None or text != f.cli_default:
            options += [flag, shlex.quote(text)]
    return " ".join([*words, *options])


def safe_cli_line(form: Form, data: Mapping[str, str]) -> str:
    """The CLI line of submitted text that may not parse: each field as typed (bad input shows what it was)."""
    try:
        return cli_line(form, values_of(form, data))
    except FieldError:
        typed = {f.name: data.get(f.name, f.default).strip() or None for f in form.fields}
        return cli_line(form, typed)
