"""``haoscar spec validate``: check a cluster spec and summarise it (nothing is written)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.spec import ClusterSpec, load_spec
from haoscar.spec.summary import spec_summary
from haoscar.spec.topology import spec_warnings

__all__ = ["SpecChecked", "ValidateSpec", "spec_validate"]


@dataclass(frozen=True)
class ValidateSpec:
    file: Path


@dataclass(frozen=True)
class SpecChecked:
    """A valid spec with its summary (networks, heads, client groups, HA settings)."""

    file: Path
    spec: ClusterSpec
    summary: dict[str, Any]
    warnings: tuple[str, ...] = ()
    """What the spec does not give (e.g. no private alias): said, never an error."""

    def as_dict(self) -> dict[str, Any]:
        return {"valid": True, "file": str(self.file), **self.summary, "warnings": list(self.warnings)}


def spec_validate(env: Env, request: ValidateSpec) -> SpecChecked:
    """Raises SpecError listing every problem (file, line, path, message), or UserError for an unreadable file."""
    spec = load_spec(request.file)
    return SpecChecked(request.file, spec, spec_summary(spec), tuple(spec_warnings(spec)))
