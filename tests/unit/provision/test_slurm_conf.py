"""slurm.conf rendering (golden files), the controller address, slurmd -C parsing and the munge key."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from haoscar.provision.slurm_conf import (
    SlurmNode,
    configured_node_names,
    controller_address,
    ensure_munge_key,
    parse_slurmd_c,
    render_slurm_conf,
    unknown_nodes,
    write_slurm_conf,
)
from haoscar.spec.loader import load_spec
from haoscar.spec.models import ClusterSpec

GOLDEN = Path(__file__).parent / "golden" / "slurm"


def assert_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("HAOSCAR_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file; HAOSCAR_UPDATE_GOLDEN=1 updates it"


def lab_spec(tmp_path: Path, private_alias: str | None = None) -> ClusterSpec:
    raw = yaml.safe_load(resources.files("haoscar.data").joinpath("lab.yaml").read_text())
    if private_alias is not None:
        for head in raw["heads"].values():
            head["private_alias_ip"] = private_alias
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


NODES = [
    SlurmNode("node10", "198.18.0.110", 8, 32000, True),
    SlurmNode("node2", "198.18.0.102"),  # not reported yet: the safe default
    SlurmNode("node1", "198.18.0.101", 2, 7900, True),
]


def test_slurm_conf_golden() -> None:
    text = render_slurm_conf("labcluster", "198.18.0.3", NODES)
    assert_golden("slurm.conf", text)
    # node2 before node10, and every node in the default partition.
    assert text.index("NodeName=node2 ") < text.index("NodeName=node10 ")
    assert "PartitionName=compute Nodes=node1,node2,node10 Default=YES" in text


def test_slurm_conf_without_nodes_has_no_partition() -> None:
    text = render_slurm_conf("empty", "198.18.0.1", [])
    assert_golden("slurm-empty.conf", text)
    assert "PartitionName" not in text and "NodeName" not in text


def test_one_controller_entry_at_the_controller_address() -> None:
    lines = render_slurm_conf("c", "198.18.0.3", NODES).splitlines()
    assert [line for line in lines if line.startswith("SlurmctldHost")] == ["SlurmctldHost=localhost(198.18.0.3)"]
    assert "StateSaveLocation=/var/lib/haoscar/scheduler/slurmctld" in lines  # a default replicated tree


def test_controller_address_is_the_private_alias_when_the_spec_has_one(tmp_path: Path) -> None:
    spec = lab_spec(tmp_path, private_alias="198.18.0.3")
    assert controller_address(spec) == "198.18.0.3"
    assert controller_address(spec, active="head2") == "198.18.0.3"


def test_controller_address_without_an_alias_is_the_active_heads_private_ip(tmp_path: Path) -> None:
    spec = lab_spec(tmp_path)
    assert controller_address(spec) == "198.18.0.1"
    assert controller_address(spec, active="head2") == "198.18.0.2"


def test_parse_slurmd_c() -> None:
    out = (
        "NodeName=node01 CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105\n"
        "UpTime=0-00:50:48\n"
    )
    assert parse_slurmd_c(out) == (2, 24105)
    assert parse_slurmd_c("slurmd: error: cannot read config") is None


def test_node_names_of_a_config_and_the_unknown_ones() -> None:
    text = render_slurm_conf("c", "198.18.0.3", NODES)
    assert configured_node_names(text) == ["node1", "node2", "node10"]
    assert unknown_nodes(["node1", "node7", "node2"], ["node1", "node2"]) == ["node7"]


def test_munge_key_is_generated_once_1024_bytes_mode_0400(tmp_path: Path) -> None:
    path = tmp_path / "slurm" / "munge.key"
    key, created = ensure_munge_key(path)
    assert created and len(key) == 1024 and path.read_bytes() == key
    assert path.stat().st_mode & 0o777 == 0o400
    again, created_again = ensure_munge_key(path)
    assert again == key and not created_again


def test_slurm_conf_is_written_atomically_and_only_when_changed(tmp_path: Path) -> None:
    path = tmp_path / "slurm" / "slurm.conf"
    text = render_slurm_conf("c", "198.18.0.3", NODES)
    assert write_slurm_conf(path, text)
    assert path.read_text() == text and path.stat().st_mode & 0o777 == 0o644
    assert not write_slurm_conf(path, text)
    assert [p.name for p in path.parent.iterdir()] == ["slurm.conf"]  # no temporary file left behind
