"""Loading ``cluster.yaml``: YAML with line numbers -> pydantic models -> cross-section checks.

Every problem is collected and reported together as ``FILE:LINE: path.to.field: what is wrong and what would be
right``; nothing here raises a traceback at the user.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from haoscar.errors import UserError
from haoscar.spec.checks import Parts, run_checks
from haoscar.spec.checks_alias import run_alias_checks
from haoscar.spec.models import HA, ClientGroup, ClusterSpec, HeadNode, Image, Lab, Network
from haoscar.spec.nfs_checks import run_nfs_checks
from haoscar.spec.nfs_models import NFS
from haoscar.spec.yamlsrc import Located, Path_, YamlSyntaxError, dotted, load_located

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, order=True)
class Problem:
    line: int
    path: str
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.path}: {self.message}"

    def as_dict(self, filename: str) -> dict[str, Any]:
        return {"file": filename, **asdict(self)}


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


def _kind_of(value: Any) -> str:
    """How a YAML value looks to the person who wrote it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _limit(ctx: dict[str, Any]) -> str:
    return next(f"{value:g}" if isinstance(value, float) else str(value) for value in ctx.values())


def _message(error: Any, path: Path_) -> str:
    kind = error["type"]
    got = _kind_of(error.get("input"))
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(path[-1])
        model = _model_at(path[:-1])
        known = list(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return f"required; add {path[-1]!r}" if path and isinstance(path[-1], str) else "required"
    simple = {
        "dict_type": "expected a mapping (key: value lines, indented under this key)",
        "model_type": "expected a mapping (key: value lines, indented under this key)",
        "model_attributes_type": "expected a mapping (key: value lines, indented under this key)",
        "list_type": "expected a list (one '- item' per line, or [a, b])",
        "int_type": "expected a whole number such as 8",
        "int_parsing": "expected a whole number such as 8",
        "int_from_float": "expected a whole number such as 8",
        "float_type": "expected a number such as 0.5",
        "float_parsing": "expected a number such as 0.5 (seconds are plain numbers, no unit)",
        "bool_type": "expected true or false",
        "bool_parsing": "expected true or false",
        "string_type": "expected a text value such as eth0",
    }
    if kind in simple:
        return f"{simple[kind]}, got {got}"
    bounds = {
        "greater_than": "more than",
        "greater_than_equal": "at least",
        "less_than": "less than",
        "less_than_equal": "at most",
    }
    if kind in bounds and ctx:
        return f"{got} is out of range; use a value {bounds[kind]} {_limit(ctx)}"
    if kind == "literal_error":
        return f"{got} is not one of the choices; use {ctx.get('expected', 'one of the listed values')}"
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length', 1)} item(s), got {ctx.get('actual_length', 0)}"
    if kind == "too_long":
        return f"allows at most {ctx.get('max_length')} item(s), got {ctx.get('actual_length')}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _problems_from(exc: ValidationError, located: Located, prefix: Path_ = ()) -> list[Problem]:
    problems = []
    for error in exc.errors():
        path = (*prefix, *error["loc"])
        problems.append(Problem(located.line_of(path), dotted(path), _message(error, path)))
    return problems


@functools.cache
def _field_adapter(model: type[BaseModel], name: str) -> TypeAdapter[Any]:
    info = model.model_fields[name]
    # The field's type plus its constraints (ge=, min_length=, ...), which pydantic keeps apart in metadata.
    annotation: Any = info.annotation
    if info.metadata:
        annotation = Annotated[annotation, *info.metadata]
    return TypeAdapter(annotation)


def _partial(model: type[M], raw: Any, *, defaults: bool) -> tuple[M | None, set[str]]:
    """``model`` from ``raw`` keeping every field that passes its own check, so that one bad field does not hide
    the cross checks of its neighbours; and the names of the fields that failed (already reported).

    A field that failed becomes its default when ``defaults`` is true and it has one, else None: the checks of
    this package treat None as "unknown" (the type hints of a partial model are looser than they read).
    """
    if not isinstance(raw, dict):
        return None, set()
    try:
        return model.model_validate(raw), set()
    except ValidationError:
        pass
    values: dict[str, Any] = {}
    bad: set[str] = set()
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        if name not in raw:
            values[name] = default
            if info.is_required():
                bad.add(name)
            continue
        try:
            values[name] = _field_adapter(model, name).validate_python(raw[name])
        except ValidationError:
            values[name] = default if defaults else None
            bad.add(name)
    return model.model_construct(**values), bad


def _parts(data: dict[str, Any]) -> Parts:
    """Each section validated on its own, so cross checks can run on whatever is sound."""
    parts = Parts()

    def partial(model: type[M], raw: Any, path: Path_, *, defaults: bool = False) -> M | None:
        found, bad = _partial(model, raw, defaults=defaults)
        parts.bad.update((*path, name) for name in bad)
        return found

    networks = data.get("networks")
    if isinstance(networks, dict):
        for name in ("private", "public", "heartbeat"):
            net = partial(Network, networks.get(name), ("networks", name))
            if net is not None and net.subnet is not None:
                parts.networks[name] = net
            elif name in networks:
                parts.bad.add(("networks", name))
    heads = data.get("heads")
    if isinstance(heads, dict):
        for role in ("primary", "standby"):
            if (head := partial(HeadNode, heads.get(role), ("heads", role))) is not None:
                parts.heads[role] = head
    images = data.get("images") or []
    if isinstance(images, list):
        for index, raw in enumerate(images):
            image = partial(Image, raw, ("images", index))
            if image is not None and image.name is not None:
                parts.images.append((index, image))
            else:
                parts.image_names_known = False
    else:
        parts.image_names_known = False
    clients = data.get("clients") or []
    if isinstance(clients, list):
        for index, raw in enumerate(clients):
            if (group := partial(ClientGroup, raw, ("clients", index))) is not None:
                parts.clients.append((index, group))
    parts.ha = partial(HA, data["ha"] if data.get("ha") is not None else {}, ("ha",), defaults=True)
    parts.lab = partial(Lab, data["lab"] if data.get("lab") is not None else {}, ("lab",))
    parts.nfs = partial(NFS, data["nfs"] if data.get("nfs") is not None else {}, ("nfs",), defaults=True)
    return parts


def _top_level_problem(located: Located) -> Problem | None:
    expected = "a spec is a mapping with the keys cluster, networks and heads (see examples/lab.yaml)"
    if located.data is None:
        return Problem(1, "(top level)", f"the file holds no YAML document; {expected}")
    if isinstance(located.data, list):
        return Problem(located.line_of(()), "(top level)", f"the file holds a list; {expected}")
    if not isinstance(located.data, dict):
        return Problem(located.line_of(()), "(top level)", f"the file holds {_kind_of(located.data)}; {expected}")
    return None


def check_text(text: str, filename: str = "cluster.yaml") -> tuple[ClusterSpec | None, list[Problem]]:
    """Every problem of a spec, sorted by line; the spec itself when there are none."""
    try:
        located = load_located(text)
    except YamlSyntaxError as exc:
        return None, [Problem(exc.line, "(file)", exc.message)]
    if (problem := _top_level_problem(located)) is not None:
        return None, [problem]
    problems = [
        Problem(line, dotted(path), f"key {str(path[-1])!r} appears twice; keep one (the first one is used)")
        for path, line in located.duplicates
    ]
    spec: ClusterSpec | None = None
    try:
        spec = ClusterSpec.model_validate(located.data)
    except ValidationError as exc:
        problems.extend(_problems_from(exc, located))
    parts = _parts(located.data)
    for path, message in [*run_checks(parts), *run_alias_checks(parts), *run_nfs_checks(parts)]:
        problems.append(Problem(located.line_of(path), dotted(path), message))
    unique = sorted(set(problems))
    return (spec if not unique else None), unique


def load_spec(path: Path | str) -> ClusterSpec:
    """A valid spec from a file, or a SpecError listing every problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{file}: no such file; give the path of a cluster spec such as examples/lab.yaml") from None
    except IsADirectoryError:
        raise UserError(f"{file}: is a directory; give the path of a cluster spec file such as cluster.yaml") from None
    except UnicodeDecodeError:
        raise UserError(f"{file}: is not UTF-8 text; a cluster spec is a UTF-8 YAML file") from None
    except OSError as exc:
        raise UserError(f"{file}: cannot read the spec ({exc.strerror}); give a readable YAML file") from None
    spec, problems = check_text(text, str(file))
    if problems or spec is None:
        raise SpecError(str(file), problems)
    return spec
