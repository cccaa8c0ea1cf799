"""``haoscar bench install-fanout`` once with 4 nodes, for real: the installer's fetch path and rsync, side by side.

No timing is asserted (the machine is shared; speed is the bench's business): the JSON carries the keys a script
reads, with numbers where numbers belong, every node got the whole image through both systems (the installer
checked the stream against the plan's SHA-256, and every tree equals the image file by file), and the lab is gone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haoscar.scenarios.bench.install_fanout import run_bench

pytestmark = [pytest.mark.lab, pytest.mark.timeout(120)]

NODES = 4
TOP = ("haoscar_aggregate_mb_per_s", "haoscar_slowest_node_s", "haoscar_server_cpu_pct", "rsync_aggregate_mb_per_s",
       "rsync_slowest_node_s", "rsync_server_cpu_pct", "haoscar_vs_rsync_throughput", "image_mb")  # fmt: skip
ROUND = ("aggregate_mb_per_s", "slowest_node_s", "median_node_s", "wall_s", "server_cpu_s",
         "server_cpu_pct_of_one_core", "server_cpu_ms_per_mb", "clients_cpu_s")  # fmt: skip


def lab_namespaces() -> set[str]:
    prefix = f"hl_if{os.getpid() % 100000}-"  # the bench names its labs unique_lab_name("if")
    return {p.name for p in Path("/run/netns").glob(f"{prefix}*")} if Path("/run/netns").is_dir() else set()


def test_four_nodes_pull_a_complete_image_through_both_systems() -> None:
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces)")
    result = run_bench(NODES)
    assert result["nodes"] == NODES
    for key in TOP:
        assert isinstance(result[key], float | int) and result[key] > 0, (key, result[key])
    assert result["image_files"] >= 1000  # many small files, as a system image has
    for system in ("haoscar", "rsync"):
        measured = result[system]
        for key in ROUND:
            assert isinstance(measured[key], float | int), (system, key, measured[key])
        assert measured["errors"] == {}, (system, measured["errors"])
        assert measured["nodes_done"] == NODES and measured["nodes_verified"] == NODES, (system, measured)
        assert measured["unverified"] == {}, (system, measured["unverified"])
        assert sorted(measured["per_node_s"]) == [f"node{i:03d}" for i in range(1, NODES + 1)]
    assert result["all_nodes_verified"] is True
    config = result["config"]
    assert config["nodes"] == NODES and config["image"]["files"] == result["image_files"]
    assert "install.sh" in config["haoscar_path"] and "rsync daemon" in config["rsync_path"]
    assert lab_namespaces() == set(), "the bench left its lab behind"
