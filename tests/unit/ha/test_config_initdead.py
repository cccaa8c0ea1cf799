"""``ha.initdead_s``: the spec field, its check against dead_time, and the derived timing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from haoscar.errors import UserError
from haoscar.ha.config import node_config
from haoscar.spec import load_spec

LAB_YAML = Path(__file__).parents[3] / "src" / "haoscar" / "data" / "lab.yaml"


def _spec(tmp_path: Path, **ha: object) -> Path:
    raw = yaml.safe_load(LAB_YAML.read_text())
    raw["ha"].update(ha)
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_initdead_defaults_to_ten_seconds_and_shows_in_the_timings(tmp_path: Path) -> None:
    cfg = node_config(load_spec(_spec(tmp_path)), "standby")
    assert cfg.timings.initdead == 10.0
    assert cfg.timings.as_dict()["initdead_s"] == 10.0


def test_initdead_shorter_than_dead_time_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_spec(_spec(tmp_path, dead_time=0.6, initdead_s=0.3))
    assert "initdead_s" in str(err.value) and "use at least 0.6 s" in str(err.value)
