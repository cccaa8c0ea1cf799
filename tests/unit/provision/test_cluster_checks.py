"""The pure parts of ``cluster test``: what a node's answers mean (provision.cluster_checks, cluster_jobs)."""

from __future__ import annotations

import pytest

from haoscar.provision.cluster_checks import Expected, Offset, resolve_verdict, written_path
from haoscar.provision.cluster_jobs import hosts_that_ran, program_message, ranks_by_host

GOOD = "/home/alice/.haoscar-cluster-test.0a1b2c3d.3f2c1e9a-1b2c-4d5e-8f90-0123456789ab"


@pytest.mark.parametrize(
    "said",
    [
        ["/etc/shadow"],
        ["/home/alice/../../etc/.haoscar-cluster-test.0a1b2c3d.3f2c1e9a-1b2c-4d5e-8f90-0123456789ab"],
        ["/home/alice/.haoscar-cluster-test.ffffffff.3f2c1e9a-1b2c-4d5e-8f90-0123456789ab"],  # another run's
        ["/home/alice/.haoscar-cluster-test.0a1b2c3d.x; rm -rf /"],
        [GOOD, GOOD],
        [],
    ],
)
def test_a_node_cannot_name_a_path_the_head_would_read_or_remove(said: list[str]) -> None:
    assert written_path(said, "/home/alice", "0a1b2c3d") is None


def test_the_path_a_node_wrote_is_taken_when_it_is_this_runs() -> None:
    assert written_path(["", GOOD + "  "], "/home/alice/", "0a1b2c3d") == GOOD


def test_resolution_names_each_mismatch_and_counts_the_rest() -> None:
    expected = Expected()
    expected.add("198.18.0.101", ["node01", "node01.lab"])
    expected.add("198.18.0.102", ["node02", "node02.lab"])
    lines = [
        "node01\t198.18.0.101 node01.lab node01",
        "node01.lab\t127.0.1.1 node01.lab node01",
        "node02\t",
        "node02.lab\t198.18.0.102 node02.lab",
        "198.18.0.101\t198.18.0.101 other",
        "198.18.0.102\t198.18.0.102 node02.lab node02",
    ]
    verdict = resolve_verdict(expected, lines)
    assert not verdict.ok
    assert verdict.reason == (
        "node01.lab -> 127.0.1.1 (the database: 198.18.0.101); node02 does not resolve (the database: 198.18.0.102); "
        "198.18.0.101 -> other (the database: node01)"
    )
    lines[1], lines[2], lines[4] = (
        "node01.lab\t198.18.0.101 node01.lab",
        "node02\t198.18.0.102 x",
        "198.18.0.101\t1 node01",
    )
    assert resolve_verdict(expected, lines).ok


def test_an_offset_is_decided_only_when_its_window_allows() -> None:
    assert Offset(100.0, 99.9, 100.1).verdict(1.0) is not None
    assert Offset(100.0, 99.9, 100.1).verdict(1.0).ok  # type: ignore[union-attr]
    assert not Offset(102.0, 99.9, 100.1).verdict(1.0).ok  # type: ignore[union-attr]
    assert Offset(100.9, 99.5, 100.5).verdict(1.0) is None  # +0.9 ± 0.5: within or beyond, cannot tell


def test_job_output_and_messages() -> None:
    assert hosts_that_ran("node01\nnode02.lab.haoscar\n\n") == {"node01", "node02"}
    ranks, size = ranks_by_host("haoscar-mpi-hello 1 2 node02\nnoise\nhaoscar-mpi-hello 0 2 node01.lab\n")
    assert ranks == {"node01": 1, "node02": 1} and size == 2
    boxed = "-----------\nThere are not enough slots available\n-----------\n"
    assert program_message("", boxed) == "There are not enough slots available"
    said = "srun: Requested partition configuration not available now\nsrun: error: Unable to allocate resources: x\n"
    assert program_message("", said) == "srun: error: Unable to allocate resources: x"
