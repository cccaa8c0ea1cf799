"""``haoscar spec validate``: check a cluster spec and summarise it (nothing is written)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haoscar.commands.env import Env
from haoscar.spec import ClusterSpec, load_spec
from haoscar.spec.summary import spec_summary

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

    def as_dict(self) -> dict[str, Any]:
        return {"valid": True, "file": str(self.file), **self.summary}


def spec_validate(env: Env, request: ValidateSpec) -> SpecChecked:
    """Raises SpecError listing every problem (file, line, path, message), or UserError for an unreadable file."""
    spec = load_spec(request.file)
    return SpecChecked(request.file, spec, spec_summary(spec))
