"""Loading ``cluster.yaml``: YAML with line numbers -> pydantic models -> cross-section checks.

Every problem is collected and reported together as ``FILE:LINE: path.to.field: what is wrong and what would be
right``; nothing here raises a traceback at the user.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from haoscar.errors import UserError
from haoscar.spec.checks import Parts, run_checks
from haoscar.spec.models import HA, ClientGroup, ClusterSpec, HeadNode, Image, Lab, Network
from haoscar.spec.yamlsrc import Located, Path_, YamlSyntaxError, dotted, load_located


@dataclass(frozen=True, order=True)
class Problem:
    line: int
    path: str
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.path}: {self.message}"


class SpecError(UserError):
    """A spec with problems; ``str()`` lists every one of them."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"{filename}: {len(problems)} {noun} found; fix them and validate again",
            [p.render(filename) for p in problems],
        )
        self.filename = filename
        self.problems = problems


def _model_at(path: Path_) -> type[BaseModel] | None:
    """The pydantic model class that holds the keys at ``path`` (list indices and dict keys skipped)."""
    model: type[BaseModel] | None = ClusterSpec
    for part in path:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _inner_model(info.annotation)
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, dict, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _message(error: Any, path: Path_) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(path[-1])
        model = _model_at(path[:-1])
        known = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return f"required; add {path[-1]!r}" if path else "required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        message = "expected a mapping of keys to values here"
    elif kind == "list_type":
        message = "expected a list (items starting with '-') here"
    return message


def _problems_from(exc: ValidationError, located: Located, prefix: Path_ = ()) -> list[Problem]:
    problems = []
    for error in exc.errors():
        path = (*prefix, *error["loc"])
        problems.append(Problem(located.line_of(path), dotted(path), _message(error, path)))
    return problems


def _try(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _parts(data: dict[str, Any]) -> Parts:
    """Validate each section on its own, so cross checks can run on the sections that are sound."""
    parts = Parts()
    networks = data.get("networks")
    if isinstance(networks, dict):
        for name in ("private", "public", "heartbeat"):
            if networks.get(name) is not None and (net := _try(Network, networks[name])) is not None:
                parts.networks[name] = net
    heads = data.get("heads")
    if isinstance(heads, dict):
        for role in ("primary", "standby"):
            if (head := _try(HeadNode, heads.get(role))) is not None:
                parts.heads[role] = head
    images = data.get("images") or []
    if isinstance(images, list):
        for index, raw in enumerate(images):
            if (image := _try(Image, raw)) is not None:
                parts.images.append((index, image))
            else:
                parts.image_names_known = False
    clients = data.get("clients") or []
    if isinstance(clients, list):
        for index, raw in enumerate(clients):
            if (group := _try(ClientGroup, raw)) is not None:
                parts.clients.append((index, group))
    parts.ha = _try(HA, data.get("ha") or {})
    parts.lab = _try(Lab, data.get("lab") or {})
    return parts


def check_text(text: str, filename: str = "cluster.yaml") -> tuple[ClusterSpec | None, list[Problem]]:
    """Every problem of a spec, sorted by line; the spec itself when there are none."""
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        return None, [Problem(exc.line, "(file)", exc.message)]
    if not isinstance(located.data, dict):
        return None, [Problem(1, "(top level)", "the spec must be a mapping with cluster, networks, heads, ...")]
    problems = [
        Problem(line, dotted(path), f"key {str(path[-1])!r} appears twice; keep one")
        for path, line in located.duplicates
    ]
    spec: ClusterSpec | None = None
    try:
        spec = ClusterSpec.model_validate(located.data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, located))
    for path, message in run_checks(_parts(located.data)):
        problems.append(Problem(located.line_of(path), dotted(path), message))
    unique = sorted(set(problems))
    return (spec if not unique else None), unique


def load_spec(path: Path | str) -> ClusterSpec:
    """A valid spec from a file, or a SpecError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise UserError(f"{file}: no such file; give the path of a cluster spec such as examples/lab.yaml") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: cannot read the spec ({exc.__class__.__name__}); give a readable YAML file") from None
    spec, problems = check_text(text, str(file))
    if problems or spec is None:
        raise SpecError(str(file), problems)
    return spec
