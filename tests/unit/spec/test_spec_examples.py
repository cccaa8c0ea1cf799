"""The shipped example specs are valid and describe the clusters their comments promise."""

from __future__ import annotations

from pathlib import Path

import pytest

from haoscar.spec import all_nodes, load_spec

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("name", "nodes", "first_client"),
    [("cluster.yaml", 10, ("oscarnode1", "192.168.3.101")), ("lab.yaml", 4, ("node01", "198.18.0.101"))],
)
def test_example_is_valid(name: str, nodes: int, first_client: tuple[str, str]) -> None:
    spec = load_spec(ROOT / "examples" / name)
    expanded = all_nodes(spec)
    assert len(expanded) == nodes
    assert (expanded[2].name, str(expanded[2].interfaces[0].ip)) == first_client
    assert spec.heads.primary.alias_ip == spec.heads.standby.alias_ip


def test_packaged_demo_spec_is_valid() -> None:
    spec = load_spec(ROOT / "src" / "haoscar" / "data" / "lab.yaml")
    assert spec.cluster.name == "labcluster"
